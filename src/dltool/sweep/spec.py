"""The sweep file: its schema, :func:`load_sweep` and :func:`plan` (every trial, in order)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from dltool.errors import ConfigError
from dltool.messages import describe_validation_error
from dltool.metrics import METRIC_KEY_PATTERN, higher_is_better
from dltool.overrides import parse_assignment
from dltool.schema import Int, RunName, Strict, matching
from dltool.yamlio import YamlProblem, read_yaml_mapping


class Choice(Strict):
    choice: list[Any] = Field(..., min_length=1)

    def draw(self, rng: np.random.Generator) -> Any:
        return self.choice[int(rng.integers(len(self.choice)))]


class Uniform(Strict):
    uniform: tuple[float, float]

    def draw(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(*self.uniform))


class LogUniform(Strict):
    log_uniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]

    def draw(self, rng: np.random.Generator) -> Any:
        low, high = self.log_uniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))


class IntUniform(Strict):
    int_uniform: tuple[Int, Int]

    def draw(self, rng: np.random.Generator) -> Any:
        return int(rng.integers(self.int_uniform[0], self.int_uniform[1] + 1))


DISTRIBUTIONS: dict[str, type[Strict]] = {
    "choice": Choice,
    "uniform": Uniform,
    "log_uniform": LogUniform,
    "int_uniform": IntUniform,
}


def _distribution_kind(value: Any) -> str | None:
    """The one key of a distribution mapping picks its class (a mistake gets one report)."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in DISTRIBUTIONS else None
    return None


Distribution = Annotated[
    Annotated[Choice, Tag("choice")]
    | Annotated[Uniform, Tag("uniform")]
    | Annotated[LogUniform, Tag("log_uniform")]
    | Annotated[IntUniform, Tag("int_uniform")],
    Discriminator(
        _distribution_kind,
        custom_error_type="distribution",
        custom_error_message="not a distribution",
    ),
]


class RandomSearch(Strict):
    trials: Int = Field(..., ge=1, le=10_000)
    seed: Int = Field(0, ge=0, description="seed of the sampling (trial seeds are separate)")
    params: dict[str, Distribution] = Field(..., min_length=1)


class SweepConfig(Strict):
    name: RunName
    base: str = Field(..., description="experiment file, relative to the sweep file")
    metric: str = matching(
        METRIC_KEY_PATTERN,
        "a split and a metric, e.g. validation.loss or test.accuracy",
        "validation.loss",
    )
    mode: Literal["min", "max", "auto"] = "auto"
    grid: dict[str, list[Any]] | None = Field(None, min_length=1)
    random: RandomSearch | None = None
    repeats: Int = Field(
        1, ge=1, le=100, description="trainings per point, seeds seed, seed+1, ..."
    )
    seed: Int = Field(0, ge=0, description="first trial seed (when the base config sets none)")
    overrides: list[str] = Field([], description="--set assignments applied to every trial")

    @model_validator(mode="after")
    def _one_search(self) -> SweepConfig:
        if (self.grid is None) == (self.random is None):
            raise ValueError("give exactly one of grid and random")
        return self

    @property
    def maximize(self) -> bool:
        if self.mode != "auto":
            return self.mode == "max"
        return higher_is_better(self.metric)


@dataclass
class Trial:
    number: int
    values: dict[str, Any]
    seed: int

    def assignments(self, fixed: list[str]) -> list[str]:
        return [
            *fixed,
            *(f"{k}={json.dumps(v)}" for k, v in self.values.items()),
            f"seed={self.seed}",
        ]

    def label(self) -> str:
        return " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in self.values.items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def load_sweep(path: Path, recorded: bool = False) -> SweepConfig:
    """Read and validate a sweep file; its base experiment and keys are checked too.

    Args:
        path: the sweep file, or (``recorded``) the copy a sweep folder keeps, which
            also names the file it came from.

    Raises:
        ConfigError: one line per problem.
    """
    try:
        raw = read_yaml_mapping(path)
    except YamlProblem as problem:
        raise ConfigError(f"{path}: {problem}") from problem
    if recorded:
        raw.pop("source", None)
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(
            *(f"{path}: {k}: {t}" for k, t in describe_validation_error(error, SweepConfig))
        ) from None
    base = (path.parent / sweep.base).resolve()
    if not base.is_file():
        raise ConfigError(f"{path}: base: {sweep.base} not found (looked for {base})")
    sweep.base = str(base)
    keys = list(sweep.grid or {}) or list(sweep.random.params if sweep.random else {})
    for key in keys:
        parse_assignment(f"{key}=0")  # a malformed key is refused here, naming it
    return sweep


def plan(sweep: SweepConfig, base_seed: int | None) -> list[Trial]:
    """Every trial of the sweep, numbered from 1, in a fixed order."""
    first_seed = base_seed if base_seed is not None else sweep.seed
    points: list[dict[str, Any]]
    if sweep.grid is not None:
        keys = list(sweep.grid)
        points = [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*sweep.grid.values())
        ]
    else:
        assert sweep.random is not None  # noqa: S101  (checked by the model validator)
        rng = np.random.default_rng(sweep.random.seed)
        points = [
            {k: d.draw(rng) for k, d in sweep.random.params.items()}
            for _ in range(sweep.random.trials)
        ]
    trials: list[Trial] = []
    for values in points:
        for repeat in range(sweep.repeats):
            trials.append(Trial(len(trials) + 1, values, first_seed + repeat))
    return trials


# In a worker process: the sweep's shared stop request (a multiprocessing Value holding
# the signal number that stopped the sweep; 0 = none). None in the main process.
