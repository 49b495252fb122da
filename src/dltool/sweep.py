"""Sweeps: train many variants of one experiment and compare them.

A sweep file names a base experiment and the values to try, as ``--set`` keys::

    name: regularization
    base: ../student_overfit.yaml
    metric: validation.loss          # split.metric from each trial's metrics.json
    mode: min
    grid:                            # every combination
      model.layers[2].rate: [0.0, 0.3, 0.5]
      training.regularization.l2: [0.0, 0.001, 0.01]

or ``random: {trials: 20, seed: 0, params: {KEY: {log_uniform: [1.0e-4, 1.0e-1]}}}``.
Each trial is a normal run folder under ``SWEEP/runs/``; ``SWEEP/trials.csv`` has a
row per trial and is rewritten (atomically) after each one, so an interrupted
sweep loses no finished trial and ``--resume`` skips them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dltool.errors import ConfigError, DltoolError, InputError, Terminated
from dltool.interrupts import raise_if_requested
from dltool.messages import describe_validation_error
from dltool.overrides import parse_assignment
from dltool.rundir import RunDir, write_csv, write_json, write_yaml
from dltool.yamlio import YamlProblem, read_yaml_mapping

HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Choice(_Strict):
    choice: list[Any] = Field(..., min_length=1)

    def draw(self, rng: np.random.Generator) -> Any:
        return self.choice[int(rng.integers(len(self.choice)))]


class Uniform(_Strict):
    uniform: tuple[float, float]

    def draw(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(*self.uniform))


class LogUniform(_Strict):
    log_uniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]

    def draw(self, rng: np.random.Generator) -> Any:
        low, high = self.log_uniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))


class IntUniform(_Strict):
    int_uniform: tuple[int, int]

    def draw(self, rng: np.random.Generator) -> Any:
        return int(rng.integers(self.int_uniform[0], self.int_uniform[1] + 1))


Distribution = Choice | Uniform | LogUniform | IntUniform


class RandomSearch(_Strict):
    trials: int = Field(..., ge=1, le=10_000)
    seed: int = Field(0, ge=0, description="seed of the sampling (trial seeds are separate)")
    params: dict[str, Distribution] = Field(..., min_length=1)


class SweepConfig(_Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
    base: str = Field(..., description="experiment file, relative to the sweep file")
    metric: str = Field("validation.loss", pattern=r"^(train|validation|test)\.[a-z0-9_]+$")
    mode: Literal["min", "max", "auto"] = "auto"
    grid: dict[str, list[Any]] | None = Field(None, min_length=1)
    random: RandomSearch | None = None
    repeats: int = Field(
        1, ge=1, le=100, description="trainings per point, seeds seed, seed+1, ..."
    )
    seed: int = Field(0, ge=0, description="first trial seed (when the base config sets none)")
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
        return self.metric.split(".", 1)[1] in HIGHER_IS_BETTER


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


def load_sweep(path: Path) -> SweepConfig:
    """Read and validate a sweep file; its base experiment and keys are checked too.

    Raises:
        ConfigError: one line per problem.
    """
    try:
        raw = read_yaml_mapping(path)
    except YamlProblem as problem:
        raise ConfigError(f"{path}: {problem}") from problem
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


def run_trial(base: str, assignments: list[str], runs_dir: str) -> dict[str, Any]:
    """Train one trial (in this process or a worker); never raises for a failed trial."""
    started = time.perf_counter()
    before = set(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else set()
    try:
        from dltool.api import train
        from dltool.interrupts import handling_signals

        with handling_signals():  # in a worker process too: stop at a batch boundary
            result = train(base, overrides=assignments, runs_dir=runs_dir, quiet=True)
        outcome = {"status": "completed", "run": str(result.path), "metrics": result.metrics}
    except DltoolError as error:
        outcome = {"status": "failed", "error": error.lines[0] if error.lines else str(error), "exit_code": int(error.exit_code)}  # fmt: skip
    except KeyboardInterrupt as interrupt:
        outcome = {
            "status": "interrupted",
            "signal": "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT",
        }
    except Exception as error:  # a bug must not stop the other trials
        outcome = {"status": "failed", "error": f"internal error: {type(error).__name__}: {error}", "exit_code": 1}  # fmt: skip
    if "run" not in outcome:
        created = sorted(set(Path(runs_dir).iterdir()) - before) if Path(runs_dir).is_dir() else []
        outcome["run"] = str(created[-1]) if created else ""
    outcome["duration_s"] = round(time.perf_counter() - started, 2)
    return outcome


class SweepDir:
    """A sweep's folder: sweep.yaml, trials.csv, best.json, sweep.png, runs/."""

    def __init__(self, path: Path, sweep: SweepConfig, trials: list[Trial]) -> None:
        self.path, self.sweep, self.trials = path, sweep, trials
        self.results: dict[int, dict[str, Any]] = {}

    def record(self, trial: Trial, outcome: dict[str, Any]) -> None:
        self.results[trial.number] = outcome
        self.write()

    def _metric(self, outcome: dict[str, Any], key: str) -> float | None:
        split, _, name = key.partition(".")
        value = outcome.get("metrics", {}).get(split, {}).get(name)
        return float(value) if isinstance(value, int | float) else None

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        name = self.sweep.metric.split(".", 1)[1]
        keys = list(self.trials[0].values) if self.trials else []
        header = ["trial", *keys, "seed", "status", f"train.{name}", f"validation.{name}", f"test.{name}", f"gap.{name}", "duration_s", "run", "error"]  # fmt: skip
        rows = []
        for trial in self.trials:
            outcome = self.results.get(trial.number)
            if outcome is None:
                continue
            train_value, val_value, test_value = (
                self._metric(outcome, f"{s}.{name}") for s in ("train", "validation", "test")
            )
            gap = None
            if train_value is not None and val_value is not None:
                # positive = the model does better on data it trained on: overfitting
                gap = (
                    train_value - val_value if name in HIGHER_IS_BETTER else val_value - train_value
                )
            rows.append([trial.number, *(json.dumps(trial.values[k]) if isinstance(trial.values[k], list | dict) else trial.values[k] for k in keys), trial.seed, outcome["status"], train_value, val_value, test_value, gap, outcome.get("duration_s"), Path(outcome.get("run", "")).name, outcome.get("error", "")])  # fmt: skip
        return header, rows

    def best(self) -> dict[str, Any] | None:
        scored = [
            (self._metric(o, self.sweep.metric), n)
            for n, o in self.results.items()
            if o["status"] == "completed"
        ]
        scored = [(v, n) for v, n in scored if v is not None and math.isfinite(v)]
        if not scored:
            return None
        value, number = (max if self.sweep.maximize else min)(scored)
        trial = self.trials[number - 1]
        return {"trial": number, "metric": self.sweep.metric, "value": value, "values": trial.values, "seed": trial.seed, "run": self.results[number].get("run")}  # fmt: skip

    def write(self) -> None:
        header, rows = self.rows()
        write_csv(self.path / "trials.csv", header, rows)
        best = self.best()
        if best is not None:
            write_json(self.path / "best.json", best)

    def load_finished(self) -> None:
        """Results of trials finished by an earlier run of this sweep (for --resume)."""
        import csv

        table = self.path / "trials.csv"
        if not table.is_file():
            return
        with open(table, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("status") != "completed":
                    continue
                number = int(row["trial"])
                run = self.path / "runs" / row["run"]
                metrics = (
                    json.loads((run / "metrics.json").read_text())
                    if (run / "metrics.json").is_file()
                    else {}
                )
                self.results[number] = {"status": "completed", "run": str(run), "metrics": metrics, "duration_s": float(row["duration_s"] or 0)}  # fmt: skip


def create(sweep: SweepConfig, source: Path, runs_dir: Path) -> SweepDir:
    from dltool.config import load_config

    base_seed = load_config(Path(sweep.base), sweep.overrides).seed  # also validates the base
    trials = plan(sweep, base_seed)
    for trial in trials[:1]:  # the trial keys must fit the base config
        load_config(Path(sweep.base), trial.assignments(sweep.overrides))
    folder = RunDir.create(runs_dir, f"{sweep.name}-sweep").path
    write_yaml(folder / "sweep.yaml", {**sweep.model_dump(mode="json"), "source": str(source)})
    return SweepDir(folder, sweep, trials)


def reopen(folder: Path) -> SweepDir:
    """An earlier sweep folder, with its finished trials (``--resume``)."""
    if not (folder / "sweep.yaml").is_file():
        raise InputError(f"{folder}: not a sweep folder (no sweep.yaml)")
    raw = read_yaml_mapping(folder / "sweep.yaml")
    raw.pop("source", None)
    sweep = SweepConfig.model_validate(raw)
    from dltool.config import load_config

    directory = SweepDir(
        folder, sweep, plan(sweep, load_config(Path(sweep.base), sweep.overrides).seed)
    )
    directory.load_finished()
    return directory


def execute(
    directory: SweepDir, jobs: int, report: Callable[[Trial, dict[str, Any]], None]
) -> None:
    """Run every trial not finished yet, ``jobs`` at a time; Ctrl-C keeps finished trials.

    Raises:
        KeyboardInterrupt: after recording what finished and cancelling the rest.
    """
    todo = [t for t in directory.trials if t.number not in directory.results]
    runs_dir = str(directory.path / "runs")
    base, fixed = directory.sweep.base, directory.sweep.overrides
    if jobs <= 1:
        for trial in todo:
            raise_if_requested()  # a safe point between trials
            outcome = run_trial(base, trial.assignments(fixed), runs_dir)
            if outcome["status"] == "interrupted":
                raise Terminated if outcome.get("signal") == "SIGTERM" else KeyboardInterrupt
            directory.record(trial, outcome)
            report(trial, outcome)
        raise_if_requested()
        return
    import multiprocessing

    # spawn: each worker starts its own TensorFlow, which is not fork-safe.
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        pending: dict[Future[dict[str, Any]], Trial] = {
            pool.submit(run_trial, base, t.assignments(fixed), runs_dir): t for t in todo
        }
        try:
            while pending:
                raise_if_requested()
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    trial = pending.pop(future)
                    outcome = future.result()
                    if outcome["status"] != "interrupted":
                        directory.record(trial, outcome)
                        report(trial, outcome)
        except KeyboardInterrupt:
            for future in pending:
                future.cancel()
            # Stop trials in flight too (their runs are marked interrupted); the pool
            # would otherwise wait for them. _processes is the executor's worker table.
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGINT)
            raise


def plot(directory: SweepDir) -> Path | None:
    """``sweep.png``: train and validation values of the sweep's metric, per trial."""
    header, rows = directory.rows()
    name = directory.sweep.metric.split(".", 1)[1]
    done = [r for r in rows if r[header.index("status")] == "completed"]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dltool.rundir import atomic_path

    labels = [directory.trials[r[0] - 1].label() or f"trial {r[0]}" for r in done]
    positions = np.arange(len(done))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(done) + 2), 4.2))
    for offset, split in ((-0.2, "train"), (0.2, "validation")):
        values = [r[header.index(f"{split}.{name}")] for r in done]
        axis.bar(
            positions + offset,
            [v if v is not None else np.nan for v in values],
            width=0.4,
            label=split,
        )
    axis.set_xticks(positions, labels=labels, rotation=45, ha="right", fontsize=8)
    axis.set_ylabel(name)
    axis.set_title(f"{directory.sweep.name}: {name} per trial (gap = overfitting)")
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    target = directory.path / "sweep.png"
    with atomic_path(target, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return target
