"""Sweeps: train many variants of one experiment and compare them.

A sweep file names a base experiment and the values to try, as ``--set`` keys::

    name: regularization
    base: ../student_overfit.yaml
    metric: validation.loss          # split.metric from each trial's metrics.json
    mode: min
    grid:                            # every combination
      model.layers[2].rate: [0.0, 0.3, 0.5]
      training.regularization.l2: [0.0, 0.001, 0.01]

or ``random: {trials: 20, seed: 0, params: {KEY: {log_uniform: [1.0e-4, 1.0e-1]}}}``, or
``tpe:`` with the same keys (Optuna's TPE sampler chooses each point from the results so
far), and optionally ``prune: {type: median, min_epochs: 3}``.
Each trial is a normal run folder under ``SWEEP/runs/``, named ``BASE-trialN`` so it is
found exactly even when it fails. The sweep's Optuna study (``SWEEP/study.journal``, or a
PostgreSQL database shared by many machines) records every trial; ``SWEEP/trials.csv`` has a
row per trial (every final ``split.metric``) and is rewritten (atomically) from it after
each one, so an interrupted sweep loses no finished trial and ``--resume`` skips them.

The package: :mod:`.spec` (the sweep file and the trial plan), :mod:`.study` (the Optuna
study: storage, taking trials, heartbeats), :mod:`.pruning` (the pruners, and what a trial
reports after each epoch), :mod:`.folder` (the sweep folder and its tables), :mod:`.opening`
(a new, joined, resumed or --status folder), :mod:`.executor` (running trials, in worker
processes with ``--jobs``), :mod:`.cluster` (each trial a Ray task, with ``--ray``); :func:`open_sweep`,
:func:`run` and :func:`show_status` here are what ``dltool sweep`` calls.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dltool import interrupts, locks, views
from dltool.errors import ExitCode
from dltool.rundir import STATUS_COMPLETED, STATUS_PRUNED
from dltool.sweep import opening
from dltool.sweep.executor import execute, run_trial
from dltool.sweep.folder import SweepDir, plot, require_sweep_folder
from dltool.sweep.spec import SweepConfig, Trial, load_sweep, plan
from dltool.sweep.study import is_database, shown

if TYPE_CHECKING:
    from dltool.sweep.cluster import RayOptions

__all__ = ["SweepConfig", "SweepDir", "Trial", "load_sweep", "open_sweep", "plan", "run", "run_trial", "show_status"]  # fmt: skip


@contextlib.contextmanager
def open_sweep(
    target: Path | None,
    runs_dir: Path,
    resume: bool,
    storage: str | None = None,
    join: str | None = None,
) -> Iterator[SweepDir]:
    """A new sweep folder for the sweep file ``target``, or (``resume``) the folder ``target``,
    or (``join``) a new folder for this worker of a study in the database ``storage``;
    locked while the body runs: a second process that resumes it is refused at once.

    Raises:
        ConfigError, InputError, UsageError: the sweep file, its base experiment, the folder,
            the database or the study is refused, or another process is running the sweep
            (named by pid and host).
    """
    if join is not None:
        assert storage is not None  # noqa: S101  (the CLI requires it)
        directory = opening.join(join, storage, runs_dir)
    elif resume:
        assert target is not None  # noqa: S101
        require_sweep_folder(target)
        with locks.hold(target, "sweep"):
            yield opening.reopen(target, storage)
        return
    else:
        assert target is not None  # noqa: S101
        directory = opening.create(load_sweep(target), target, runs_dir, storage)
    with locks.hold(directory.path, "sweep"):
        yield directory


def _trial_line(directory: SweepDir, console: Console, trial: Trial, outcome: dict[str, Any]) -> None:  # fmt: skip
    metric, total = directory.sweep.metric, len(directory.trials)
    value = directory.metric_value(outcome, metric)
    shown_value = (
        f"{metric} {views.number(value)}" if value is not None else outcome.get("error", "")
    )
    views.line(
        console,
        f"trial {trial.number:>{len(str(total))}}/{total} ",
        (outcome["status"], views.STATUS_STYLE.get(outcome["status"], "red")),
        f"  {trial.label()}  {shown_value}  ",
        (f"{outcome.get('duration_s') or 0:.1f}s", "dim"),
        f"  {outcome.get('host') or ''}",
    )


def run(directory: SweepDir, jobs: int, console: Console, ray: RayOptions | None = None) -> ExitCode:  # fmt: skip
    """Train every trial not finished yet (``ray``: as tasks on a Ray cluster), then write
    trials.csv, best.json and the plot.

    Returns:
        ExitCode.OK, or TRAINING_FAILED when a trial failed.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM; finished trials are kept and the
            exception's one line says how to continue.
    """
    total = len(directory.trials)
    where = f"on the Ray cluster {ray.address}" if ray is not None else f"{jobs} at a time"
    views.line(
        console,
        (directory.sweep.name, "bold"),
        f": {total} trials ({directory.sweep.search}), {directory.finished()} already finished, {where}; folder ",
        str(directory.path),
    )

    def report(trial: Trial, outcome: dict[str, Any]) -> None:
        _trial_line(directory, console, trial, outcome)

    try:
        with interrupts.handling_signals():
            if ray is not None:
                from dltool.sweep.cluster import execute_on_ray

                execute_on_ray(directory, ray, report)
            else:
                execute(directory, jobs, report)
    except KeyboardInterrupt as interrupt:
        directory.write()
        database = (
            f" --storage {shown(directory.storage)}" if is_database(directory.storage) else ""
        )
        how = ray.flags() if ray is not None else f"--jobs {jobs}"
        interrupt.args = (
            f"{interrupts.stop_of(interrupt).word}: {directory.finished()} of {total} trials "
            f"finished and kept; continue with: dltool sweep {directory.path} --resume {how}{database}",
        )
        raise
    return _summary(directory, console)


def _summary(directory: SweepDir, console: Console) -> ExitCode:
    """Write trials.csv, best.json and the plot; print the best trial; exit 3 if any failed."""
    metric = directory.sweep.metric
    directory.write()
    picture = plot(directory)
    from dltool.report import write_sweep_report

    page = write_sweep_report(directory.path)
    best = directory.best()
    if best:
        views.line(
            console,
            f"best: trial {best['trial']} ({metric} {views.number(best['value'])}): ",
            json.dumps(best["values"]),
        )
    views.line(
        console,
        ("trials.csv", "green"),
        f" {directory.trials_file}" + (f"; plot {picture}" if picture else "") + f"; report {page}",
    )
    failed = [n for n, o in directory.results.items() if o["status"] not in (STATUS_COMPLETED, STATUS_PRUNED)]  # fmt: skip
    return ExitCode.TRAINING_FAILED if failed else ExitCode.OK


def show_status(name: str, storage: str, runs_dir: Path, console: Console) -> ExitCode:
    """Every trial of a study, from every machine: one line each, then trials.csv, best.json
    and the plot written in a new folder under ``runs_dir``.

    Returns:
        ExitCode.OK, or TRAINING_FAILED when a trial failed.
    """
    directory = opening.status(name, storage, runs_dir)
    waiting = len(directory.trials) - len(directory.results) - len(directory.stopped)
    views.line(
        console,
        (name, "bold"),
        f": {len(directory.trials)} trials ({directory.sweep.search}) in {shown(storage)}; "
        f"{len(directory.results)} finished, {len(directory.stopped)} interrupted, "
        f"{waiting} waiting or running",
    )
    for trial in directory.trials:
        outcome = directory.results.get(trial.number) or directory.stopped.get(trial.number)
        if outcome is not None:
            _trial_line(directory, console, trial, outcome)
            views.line(console, "  run ", outcome.get("run") or "-")
    return _summary(directory, console)
