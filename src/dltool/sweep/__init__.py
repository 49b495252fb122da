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
loses no finished trial and ``--resume`` skips them.

The package: :mod:`.spec` (the sweep file and the trial plan), :mod:`.folder` (the sweep
folder and its tables), :mod:`.executor` (running trials, in worker processes with
``--jobs``); :func:`open_sweep` and :func:`run` here are what ``dltool sweep`` calls.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from dltool import interrupts, locks, views
from dltool.errors import ExitCode
from dltool.rundir import STATUS_COMPLETED
from dltool.sweep.executor import execute, run_trial
from dltool.sweep.folder import SweepDir, create, plot, reopen, require_sweep_folder
from dltool.sweep.spec import SweepConfig, Trial, load_sweep, plan

__all__ = ["SweepConfig", "SweepDir", "Trial", "load_sweep", "open_sweep", "plan", "run", "run_trial"]  # fmt: skip


@contextlib.contextmanager
def open_sweep(target: Path, runs_dir: Path, resume: bool) -> Iterator[SweepDir]:
    """A new sweep folder for the sweep file ``target``, or (``resume``) the folder ``target``,
    locked while the body runs: a second process that resumes it is refused at once.

    Raises:
        ConfigError, InputError: the sweep file, its base experiment or the folder is refused,
            or another process is running the sweep (named by pid and host).
    """
    if resume:
        require_sweep_folder(target)
        with locks.hold(target, "sweep"):
            yield reopen(target)
        return
    directory = create(load_sweep(target), target, runs_dir)
    with locks.hold(directory.path, "sweep"):
        yield directory


def run(directory: SweepDir, jobs: int, console: Console) -> ExitCode:
    """Train every trial not finished yet, then write trials.csv, best.json and the plot.

    Returns:
        ExitCode.OK, or TRAINING_FAILED when a trial failed.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM; finished trials are kept and the
            exception's one line says how to continue.
    """
    total = len(directory.trials)
    views.line(
        console,
        (directory.sweep.name, "bold"),
        f": {total} trials, {len(directory.results)} already finished, {jobs} at a time; folder ",
        str(directory.path),
    )
    metric = directory.sweep.metric

    def report(trial: Trial, outcome: dict[str, Any]) -> None:
        value = directory.metric_value(outcome, metric)
        shown = f"{metric} {views.number(value)}" if value is not None else outcome.get("error", "")
        style = "green" if outcome["status"] == STATUS_COMPLETED else "red"
        views.line(
            console,
            f"trial {trial.number:>{len(str(total))}}/{total} ",
            (outcome["status"], style),
            f"  {trial.label()}  {shown}  ",
            (f"{outcome['duration_s']:.1f}s", "dim"),
        )

    try:
        with interrupts.handling_signals():
            execute(directory, jobs, report)
    except KeyboardInterrupt as interrupt:
        directory.write()
        interrupt.args = (
            f"{interrupts.stop_of(interrupt).word}: {len(directory.results)} of {total} trials "
            f"finished and kept; continue with: dltool sweep {directory.path} --resume --jobs {jobs}",
        )
        raise
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
    failed = [n for n, o in directory.results.items() if o["status"] != STATUS_COMPLETED]
    return ExitCode.TRAINING_FAILED if failed else ExitCode.OK
