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


def _ordered(low: float, high: float) -> None:
    """A range is written low first (an inverted one is a typo, and Optuna refuses it)."""
    if low > high:
        raise ValueError(
            f"inverted range (received [{low}, {high}]; expected [LOW, HIGH] with LOW <= HIGH)"
        )


class Uniform(Strict):
    uniform: tuple[float, float]

    def draw(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(*self.uniform))

    @model_validator(mode="after")
    def _in_order(self) -> Uniform:
        _ordered(*self.uniform)
        return self


class LogUniform(Strict):
    log_uniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]

    def draw(self, rng: np.random.Generator) -> Any:
        low, high = self.log_uniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))

    @model_validator(mode="after")
    def _in_order(self) -> LogUniform:
        _ordered(*self.log_uniform)
        return self


class IntUniform(Strict):
    int_uniform: tuple[Int, Int]

    def draw(self, rng: np.random.Generator) -> Any:
        return int(rng.integers(self.int_uniform[0], self.int_uniform[1] + 1))

    @model_validator(mode="after")
    def _in_order(self) -> IntUniform:
        _ordered(*self.int_uniform)
        return self


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
    # A validated one, when the sweep is written back (model_dump)
    return next((key for key, kind in DISTRIBUTIONS.items() if isinstance(value, kind)), None)


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


# Values Optuna can record as a categorical parameter (tpe's choices must be these).
CATEGORICAL_TYPES = (type(None), bool, int, float, str)


class TpeSearch(Strict):
    """Optuna's TPE sampler (multivariate, with constant liar for parallel workers)."""

    trials: Int = Field(..., ge=1, le=10_000)
    seed: Int = Field(
        0, ge=0, description="seed of the sampler: one worker proposes the same points"
    )
    startup_trials: Int = Field(
        10, ge=1, le=10_000, description="random trials before TPE starts to model the results"
    )
    params: dict[str, Distribution] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _recordable_choices(self) -> TpeSearch:
        for key, distribution in self.params.items():
            values = getattr(distribution, "choice", [])
            odd = [v for v in values if not isinstance(v, CATEGORICAL_TYPES)]
            if odd:
                raise ValueError(
                    f"params[{key!r}]: tpe choices must be numbers, strings, booleans or null "
                    f"(received {json.dumps(odd[0])}); sweep such values with grid or random"
                )
        return self


class MedianPrune(Strict):
    """Stop a trial whose epoch value is worse than the median of earlier trials at that epoch."""

    type: Literal["median"]
    min_epochs: Int = Field(
        1, ge=1, description="epochs every trial trains before it can be pruned"
    )
    startup_trials: Int = Field(
        2, ge=0, description="trials that finish before any is pruned (they set the median)"
    )


class _Rungs(Strict):
    """What successive halving and Hyperband share: the first rung and the cut at each rung."""

    min_epochs: Int = Field(
        1, ge=1, description="epochs every trial trains before it can be pruned"
    )
    reduction_factor: Int = Field(
        3, ge=2, le=100, description="keep the best 1/factor at each rung"
    )


class SuccessiveHalvingPrune(_Rungs):
    """Asynchronous successive halving: at epochs min_epochs * factor**k keep the top 1/factor."""

    type: Literal["successive_halving"]


class HyperbandPrune(_Rungs):
    """Hyperband: several successive-halving brackets, from min_epochs up to the base's epochs."""

    type: Literal["hyperband"]


PruneSpec = Annotated[
    MedianPrune | SuccessiveHalvingPrune | HyperbandPrune, Field(discriminator="type")
]

SEARCHES = ("grid", "random", "tpe")
# What a sweep folder's sweep.yaml adds to the sweep file: where it came from, and the
# database its study is in (without the password).
RECORDED_KEYS = ("source", "storage")  # the keys that say how a sweep chooses its points


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
    tpe: TpeSearch | None = None
    prune: PruneSpec | None = None
    repeats: Int = Field(
        1, ge=1, le=100, description="trainings per point, seeds seed, seed+1, ..."
    )
    seed: Int = Field(0, ge=0, description="first trial seed (when the base config sets none)")
    overrides: list[str] = Field([], description="--set assignments applied to every trial")

    @model_validator(mode="after")
    def _one_search(self) -> SweepConfig:
        given = [key for key in SEARCHES if getattr(self, key) is not None]
        if len(given) != 1:
            received = f" (received {' and '.join(given)})" if given else ""
            raise ValueError(f"give exactly one of grid, random and tpe{received}")
        if self.tpe is not None and self.repeats != 1:
            raise ValueError(
                f"repeats: tpe trains each point once (received repeats: {self.repeats}); "
                "its sampler learns from every trial, so repeat with grid or random"
            )
        return self

    @property
    def search(self) -> str:
        """``grid``, ``random`` or ``tpe``."""
        return next(key for key in SEARCHES if getattr(self, key) is not None)

    @property
    def params(self) -> list[str]:
        """The swept keys, in file order."""
        if self.grid is not None:
            return list(self.grid)
        search = self.random or self.tpe
        return list(search.params) if search is not None else []

    @property
    def planned(self) -> bool:
        """Whether every trial is known before the first one trains (grid and random)."""
        return self.tpe is None

    def epoch_key(self) -> str:
        """The key in Keras' epoch logs that pruning watches: ``val_NAME`` for validation
        and test metrics (the test split is never seen during training), else ``NAME``."""
        split, _, name = self.metric.partition(".")
        return name if split == "train" else f"val_{name}"

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
            also names the file it came from and the database of its study.

    Raises:
        ConfigError: one line per problem.
    """
    try:
        raw = read_yaml_mapping(path)
    except YamlProblem as problem:
        raise ConfigError(f"{path}: {problem}") from problem
    if recorded:
        for key in RECORDED_KEYS:
            raw.pop(key, None)
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
    for key in sweep.params:
        parse_assignment(f"{key}=0")  # a malformed key is refused here, naming it
    return sweep


def plan(sweep: SweepConfig, base_seed: int | None) -> list[Trial]:
    """Every trial of the sweep, numbered from 1, in a fixed order.

    A tpe search plans its trials' numbers and seeds only: the sampler chooses each one's
    values when a worker takes it (``values`` is empty until then).
    """
    first_seed = base_seed if base_seed is not None else sweep.seed
    points: list[dict[str, Any]]
    if sweep.tpe is not None:
        return [Trial(number, {}, first_seed) for number in range(1, sweep.tpe.trials + 1)]
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
