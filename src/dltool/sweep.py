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
Each trial is a normal run folder under ``SWEEP/runs/``, named ``BASE-trialN`` so it is
found exactly even when it fails; ``SWEEP/trials.csv`` has a row per trial (every final
``split.metric``) and is rewritten (atomically) after each one, so an interrupted sweep
loses no finished trial and ``--resume`` skips them. With ``--jobs N`` at most N trials
are in flight: after Ctrl-C none starts, and those running stop at their next batch and
are listed as interrupted, with their folders.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dltool import interrupts
from dltool.errors import ConfigError, DltoolError, InputError, Terminated
from dltool.messages import describe_validation_error
from dltool.overrides import parse_assignment
from dltool.rundir import RunDir, write_csv, write_json, write_yaml
from dltool.runs import HIGHER_IS_BETTER
from dltool.yamlio import YamlProblem, read_yaml_mapping


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


# In a worker process: the sweep's shared stop request (a multiprocessing Value holding
# the signal number that stopped the sweep; 0 = none). None in the main process.
_STOP: Any = None


def _start_worker(stop: Any) -> None:
    """Set up a worker process: ignore signals between trials, follow the parent's stop."""
    global _STOP
    _STOP = stop
    # Ctrl-C in a terminal reaches every worker too. Between trials it must not kill the
    # worker (that breaks the pool); during one, run_trial's handling_signals() turns it
    # into a stop at the next batch boundary.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_follow_stop, args=(stop,), daemon=True).start()


def _follow_stop(stop: Any) -> None:
    """Turn the parent's stop request into this worker's own: a signal may not reach it
    (``kill PID`` of the parent alone) or may come just before the trial's handler is set."""
    while not stop.value:
        time.sleep(0.1)
    if interrupts.REQUEST.signum is None:
        interrupts.REQUEST.signum = int(stop.value)  # like a first signal: stop at a safe point


def _note_signal(signum: int, frame: Any) -> None:
    """A worker's signal handler: only ever asks for a stop at the next safe point.

    A Ctrl-C reaches a worker both as a signal and through _follow_stop, in either order
    (the handler waits while TensorFlow runs C++ code), so a second request must not
    raise at once as it does in the main process; the main process kills a worker that
    does not stop after a second Ctrl-C.
    """
    if interrupts.REQUEST.signum is None:
        interrupts.REQUEST.signum = signum


def run_folders(runs_dir: Path, name: str) -> set[Path]:
    """Run folders made for the run name ``name`` (``NAME-YYYYmmdd-HHMMSS[-N]``, see RunDir)."""
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?")
    if not runs_dir.is_dir():
        return set()
    return {p for p in runs_dir.iterdir() if pattern.fullmatch(p.name)}


def run_trial(base: str, assignments: list[str], runs_dir: str, name: str) -> dict[str, Any]:
    """Train one trial (in this process or a worker); never raises for a failed trial.

    ``name`` is the trial's own run name, so its folder is found exactly even when it
    fails, whatever other trials do in the same ``runs_dir`` at the same time.
    """
    started = time.perf_counter()
    before = run_folders(Path(runs_dir), name)
    outcome: dict[str, Any]
    try:
        with interrupts.handling_signals():  # in a worker too: stop at a batch boundary
            if _STOP is not None:  # a worker process
                if _STOP.value:  # the sweep stopped before this trial began
                    raise interrupts.interrupt_for(int(_STOP.value))
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, _note_signal)
            from dltool.api import train

            result = train(base, overrides=assignments, runs_dir=runs_dir, name=name, quiet=True)
        outcome = {"status": "completed", "run": str(result.path), "metrics": result.metrics}
    except DltoolError as error:
        outcome = {"status": "failed", "error": error.lines[0] if error.lines else str(error), "exit_code": int(error.exit_code)}  # fmt: skip
    except KeyboardInterrupt as interrupt:
        which = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
        outcome = {"status": "interrupted", "signal": which, "error": f"stopped by {which}; --resume trains it again"}  # fmt: skip
    except Exception as error:  # a bug must not stop the other trials
        outcome = {"status": "failed", "error": f"internal error: {type(error).__name__}: {error}", "exit_code": 1}  # fmt: skip
    if "run" not in outcome:
        created = sorted(run_folders(Path(runs_dir), name) - before)
        outcome["run"] = str(created[-1]) if created else ""
    outcome["duration_s"] = round(time.perf_counter() - started, 2)
    return outcome


SPLITS = ("train", "validation", "test")


class SweepDir:
    """A sweep's folder: sweep.yaml, trials.csv, best.json, sweep.png, runs/."""

    def __init__(self, path: Path, sweep: SweepConfig, trials: list[Trial], prefix: str) -> None:
        self.path, self.sweep, self.trials = path, sweep, trials
        self.prefix = prefix  # the base experiment's name; trial runs are PREFIX-trialN
        self.results: dict[int, dict[str, Any]] = {}  # finished: completed or failed
        self.stopped: dict[int, dict[str, Any]] = {}  # interrupted with a run folder

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def run_name(self, trial: Trial) -> str:
        """The trial's own run name, e.g. ``student-overfit-trial3`` (zero-padded past 9)."""
        suffix = f"-trial{trial.number:0{len(str(len(self.trials)))}d}"
        return self.prefix[: 80 - len(suffix)] + suffix  # run names are at most 80 characters

    def record(self, trial: Trial, outcome: dict[str, Any]) -> None:
        """Keep a trial's outcome and rewrite trials.csv; an interrupted one is redone by --resume."""
        if outcome["status"] == "interrupted":
            self.stopped[trial.number] = outcome
        else:
            self.stopped.pop(trial.number, None)
            self.results[trial.number] = outcome
        self.write()

    def _metric(self, outcome: dict[str, Any], key: str) -> float | None:
        split, _, name = key.partition(".")
        value = outcome.get("metrics", {}).get(split, {}).get(name)
        return float(value) if isinstance(value, int | float) else None

    def _columns(self) -> tuple[list[str], list[str]]:
        """``split.metric`` columns for every final value any trial has (the sweep's own
        metric always), then ``gap.metric`` for each metric with train and validation values."""
        seen: dict[tuple[str, str], None] = {}
        for outcome in self.results.values():
            for split in SPLITS:
                for name, value in outcome.get("metrics", {}).get(split, {}).items():
                    if isinstance(value, int | float):
                        seen[(split, name)] = None
        own = self.sweep.metric.split(".", 1)[1]
        names = list(dict.fromkeys([*(name for _, name in seen), own]))
        names.sort(key=lambda name: name != "loss")  # loss first, then in metrics.json order
        values = [f"{s}.{n}" for s in SPLITS for n in names if (s, n) in seen or n == own]
        gaps = [
            f"gap.{n}"
            for n in names
            if n == own or (("train", n) in seen and ("validation", n) in seen)
        ]
        return values, gaps

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        keys = list(self.trials[0].values) if self.trials else []
        values, gaps = self._columns()
        header = ["trial", *keys, "seed", "status", *values, *gaps, "duration_s", "run", "error"]
        rows = []
        for trial in self.trials:
            outcome = self.results.get(trial.number) or self.stopped.get(trial.number)
            if outcome is None:
                continue
            varied = [json.dumps(trial.values[k]) if isinstance(trial.values[k], list | dict) else trial.values[k] for k in keys]  # fmt: skip
            rows.append([trial.number, *varied, trial.seed, outcome["status"], *(self._metric(outcome, c) for c in values), *(self._gap(outcome, c.split(".", 1)[1]) for c in gaps), outcome.get("duration_s"), Path(outcome.get("run", "")).name, outcome.get("error", "")])  # fmt: skip
        return header, rows

    def _gap(self, outcome: dict[str, Any], name: str) -> float | None:
        """Positive = the model does better on data it trained on: overfitting."""
        train_value = self._metric(outcome, f"train.{name}")
        validation_value = self._metric(outcome, f"validation.{name}")
        if train_value is None or validation_value is None:
            return None
        if name in HIGHER_IS_BETTER:
            return train_value - validation_value
        return validation_value - train_value

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
        """Trials of an earlier run of this sweep (for --resume): completed ones are kept,
        interrupted ones stay listed (with their folders) until they are trained again."""
        import csv

        table = self.path / "trials.csv"
        if not table.is_file():
            return
        with open(table, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                number, status = int(row["trial"]), row.get("status")
                run = self.runs_dir / row["run"]
                duration = float(row["duration_s"] or 0)
                if status == "interrupted" and row["run"]:
                    self.stopped[number] = {"status": status, "run": str(run), "duration_s": duration, "error": row.get("error", "")}  # fmt: skip
                if status != "completed":
                    continue
                metrics = (
                    json.loads((run / "metrics.json").read_text())
                    if (run / "metrics.json").is_file()
                    else {}
                )
                self.results[number] = {"status": "completed", "run": str(run), "metrics": metrics, "duration_s": duration}  # fmt: skip


def create(sweep: SweepConfig, source: Path, runs_dir: Path) -> SweepDir:
    from dltool.config import load_config

    base = load_config(Path(sweep.base), sweep.overrides)  # also validates the base
    trials = plan(sweep, base.seed)
    for trial in trials[:1]:  # the trial keys must fit the base config
        load_config(Path(sweep.base), trial.assignments(sweep.overrides))
    folder = RunDir.create(runs_dir, f"{sweep.name}-sweep").path
    write_yaml(folder / "sweep.yaml", {**sweep.model_dump(mode="json"), "source": str(source)})
    return SweepDir(folder, sweep, trials, base.name)


def reopen(folder: Path) -> SweepDir:
    """An earlier sweep folder, with its finished trials (``--resume``)."""
    if not (folder / "sweep.yaml").is_file():
        raise InputError(f"{folder}: not a sweep folder (no sweep.yaml)")
    raw = read_yaml_mapping(folder / "sweep.yaml")
    raw.pop("source", None)
    sweep = SweepConfig.model_validate(raw)
    from dltool.config import load_config

    base = load_config(Path(sweep.base), sweep.overrides)
    directory = SweepDir(folder, sweep, plan(sweep, base.seed), base.name)
    directory.load_finished()
    return directory


Report = Callable[[Trial, dict[str, Any]], None]


def execute(directory: SweepDir, jobs: int, report: Report) -> None:
    """Run every trial not finished yet, ``jobs`` at a time; Ctrl-C keeps finished trials.

    After Ctrl-C (or SIGTERM) no new trial starts; trials in flight stop at their next
    batch and are recorded as ``interrupted`` with their run folders (marked so too).

    Raises:
        KeyboardInterrupt: after recording every trial that started.
    """
    todo = [t for t in directory.trials if t.number not in directory.results]
    if jobs > 1:
        _execute_parallel(directory, todo, jobs, report)
    else:
        for trial in todo:
            interrupts.raise_if_requested()  # a safe point between trials
            outcome = run_trial(*_arguments(directory, trial))
            _keep(directory, trial, outcome, report)
            if outcome["status"] == "interrupted":
                raise Terminated if outcome["signal"] == "SIGTERM" else KeyboardInterrupt
    interrupts.raise_if_requested()


def _arguments(directory: SweepDir, trial: Trial) -> tuple[str, list[str], str, str]:
    """``run_trial``'s arguments for ``trial``."""
    assignments = trial.assignments(directory.sweep.overrides)
    return directory.sweep.base, assignments, str(directory.runs_dir), directory.run_name(trial)


def _keep(directory: SweepDir, trial: Trial, outcome: dict[str, Any], report: Report) -> None:
    if outcome["status"] == "interrupted" and not outcome["run"]:
        return  # stopped before its run folder existed: nothing to keep, --resume runs it
    directory.record(trial, outcome)
    report(trial, outcome)


@dataclass
class _InFlight:
    trial: Trial
    existing: set[Path]  # the trial's run folders before it started (from earlier sweeps)
    started: float


def _execute_parallel(directory: SweepDir, todo: list[Trial], jobs: int, report: Report) -> None:
    """At most ``jobs`` trials in flight, so a stop request cancels every trial not started."""
    import multiprocessing

    # spawn: each worker starts its own TensorFlow, which is not fork-safe.
    context = multiprocessing.get_context("spawn")
    stop = context.Value(
        "i", 0, lock=False
    )  # the signal that stopped the sweep, for the workers; 0 = none
    queue = list(todo)
    in_flight: dict[Future[dict[str, Any]], _InFlight] = {}

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(stop,))  # fmt: skip

    pool = new_pool()
    try:
        while queue or in_flight:
            if interrupts.stop_requested() and not stop.value:
                stop.value = interrupts.REQUEST.signum or signal.SIGINT
            while queue and len(in_flight) < jobs and not stop.value:
                trial = queue.pop(0)
                existing = run_folders(directory.runs_dir, directory.run_name(trial))
                try:
                    future = pool.submit(run_trial, *_arguments(directory, trial))
                except BrokenProcessPool:
                    # A worker died (killed, out of memory): the executor refuses new work, so
                    # the next trials get a new one; the trials it was running count as failed.
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    future = pool.submit(run_trial, *_arguments(directory, trial))
                in_flight[future] = _InFlight(trial, existing, time.perf_counter())
            if not in_flight:
                break  # stopped: the rest never started
            done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                _collect(directory, in_flight.pop(future), future, report)
    except KeyboardInterrupt:  # a second Ctrl-C: stop the trials in flight at once
        stop.value = stop.value or signal.SIGINT
        _stop_now(directory, pool, in_flight, report)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _collect(directory: SweepDir, flight: _InFlight, future: Future[dict[str, Any]] | None, report: Report) -> None:  # fmt: skip
    """Record a trial that ended, or (``future`` None) one whose worker was killed."""
    try:
        if future is None:
            raise ChildProcessError("killed after a second Ctrl-C")
        outcome = future.result()
    except Exception as error:  # the worker process died (killed, out of memory)
        name = directory.run_name(flight.trial)
        created = sorted(run_folders(directory.runs_dir, name) - flight.existing)
        status = "interrupted" if future is None else "failed"
        outcome = {"status": status, "error": f"worker process died: {error}", "exit_code": 1, "run": str(created[-1]) if created else "", "duration_s": round(time.perf_counter() - flight.started, 2)}  # fmt: skip
        if created:
            _mark(RunDir(created[-1]), status, outcome["error"])
    _keep(directory, flight.trial, outcome, report)


def _mark(run: RunDir, status: str, error: str) -> None:
    """Say in run.json that a run whose process died is not running any more."""
    if (run.path / "run.json").is_file() and run.read_json("run.json").get("status") == "running":
        run.update_run_json(status=status, error=error)


def _stop_now(directory: SweepDir, pool: ProcessPoolExecutor, in_flight: dict[Future[dict[str, Any]], _InFlight], report: Report) -> None:  # fmt: skip
    """Interrupt the workers now; a trial still running after 5 s is killed, its folder marked."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # the executor's table
    with interrupts.deferred_signals():  # yet another Ctrl-C must not skip the kill below
        done, _ = wait(in_flight, timeout=5)  # they were asked to stop at their next batch
        for future in done:
            _collect(directory, in_flight.pop(future), future, report)
        for process in workers:
            process.kill()
        for flight in in_flight.values():
            _collect(directory, flight, None, report)
        in_flight.clear()


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
