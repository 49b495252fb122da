"""Running a sweep's trials: one at a time, or ``--jobs N`` worker processes.

This process takes each trial from the study (:meth:`SweepDir.claim`) just before it
starts, and records how it ended there; each worker process imports TensorFlow once and
trains many trials. When no trial waits but other machines' workers still train some,
it waits: one of theirs may be lost (its heartbeat stops) and queued again.

With ``--jobs N`` at most N trials are in flight: after Ctrl-C none starts, and
those running stop at their next batch and are listed as interrupted, with their
folders. A worker process that dies fails only its own trials; a worker whose sweep
process dies (``kill -9``) stops its trial, marks its folder orphaned and exits.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltool import interrupts
from dltool.errors import DltoolError
from dltool.rundir import (
    RUN_JSON,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    RunDir,
    folders_named,
)
from dltool.sweep.folder import SweepDir
from dltool.sweep.pruning import Watch
from dltool.sweep.spec import Trial
from dltool.sweep.study import Claimed, Heartbeat, busy_elsewhere

_STOP: Any = None
_PARENT = 0  # the sweep process's pid, in a worker; 0 in the sweep process itself
_ORPHANED = threading.Event()  # set in a worker whose sweep process died
_IN_TRIAL = threading.Event()  # set while a worker's run_trial runs
# Seconds an orphaned worker has to stop its trial at a batch boundary, write the
# checkpoint and mark the folder; then the kernel ends it (SIGALRM), whatever it is doing.
ORPHAN_GRACE_S = 20


# TensorFlow's thread pools, read from the environment when it starts in a worker.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")


def worker_threads(jobs: int) -> int:
    """Threads for each of ``jobs`` workers' TensorFlow: the cores shared out, so that N
    workers do not each start a pool as large as the machine and fight over it."""
    from dltool.backend import usable_cores

    return max(1, usable_cores() // jobs)


def share_cores(threads: int) -> None:
    """Give this process's TensorFlow ``threads`` threads (before it is imported), unless the
    user set TensorFlow's thread variables; 0 leaves TensorFlow's defaults."""
    if threads:
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, str(threads))


def _start_worker(stop: Any, parent: int, threads: int = 0) -> None:
    """Set up a worker process: share out the cores (``threads`` each, unless the user set
    TensorFlow's thread variables), ignore signals between trials, follow the parent's
    stop, and end with the parent (see :func:`_follow_parent`)."""
    global _STOP, _PARENT
    _STOP, _PARENT = stop, parent
    share_cores(threads)
    threading.Thread(target=_follow_parent, args=(parent,), daemon=True).start()
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


def _follow_parent(parent: int) -> None:
    """End this worker once the sweep process is gone, however it died.

    A ``kill -9`` of the sweep leaves its workers running (they trained their trials
    to the end, then idled, ignoring SIGTERM, ~790 MB each) and the folders of their
    trials saying ``running``. Not ``PR_SET_PDEATHSIG``: its SIGKILL would leave no
    mark in the folder, and it is Linux only. The parent's pid is polled instead (an
    orphan is adopted by another process): the trial is asked to stop at its next
    batch, as SIGTERM would, and run_trial marks its folder orphaned and exits; between
    trials the worker exits at once. ``alarm`` ends it after ORPHAN_GRACE_S if not.
    """
    while os.getppid() == parent:
        time.sleep(0.2)
    signal.alarm(ORPHAN_GRACE_S)  # SIGALRM's default action ends the process
    _ORPHANED.set()
    if interrupts.REQUEST.signum is None:
        interrupts.REQUEST.signum = signal.SIGTERM
    if not _IN_TRIAL.is_set():
        os._exit(1)  # between trials: nothing to mark (run_trial checks _ORPHANED on entry)


def _note_signal(signum: int, frame: Any) -> None:
    """A worker's signal handler: only ever asks for a stop at the next safe point.

    A Ctrl-C reaches a worker both as a signal and through _follow_stop, in either order
    (the handler waits while TensorFlow runs C++ code), so a second request must not
    raise at once as it does in the main process; the main process kills a worker that
    does not stop after a second Ctrl-C.
    """
    if interrupts.REQUEST.signum is None:
        interrupts.REQUEST.signum = signum


def run_trial(
    base: str, assignments: list[str], runs_dir: str, name: str, watch: Watch | None = None
) -> dict[str, Any]:
    """Train one trial (in this process or a worker); never raises for a failed trial.

    ``name`` is the trial's own run name, so its folder is found exactly even when it
    fails, whatever other trials do in the same ``runs_dir`` at the same time. ``watch``
    reports each epoch's value to the study and says when to prune the trial.
    """
    started = time.perf_counter()
    before = folders_named(Path(runs_dir), name)
    outcome: dict[str, Any]
    _IN_TRIAL.set()
    if _ORPHANED.is_set():
        os._exit(1)  # the sweep process died as this trial was handed over
    try:
        with interrupts.handling_signals():  # in a worker too: stop at a batch boundary
            if _STOP is not None:  # a worker process
                if _STOP.value:  # the sweep stopped before this trial began
                    raise interrupts.interrupt_for(int(_STOP.value))
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, _note_signal)
            from dltool.api import train

            result = train(base, overrides=assignments, runs_dir=runs_dir, name=name, quiet=True, prune=watch)  # fmt: skip
        outcome = {"status": result.status, "run": str(result.path), "metrics": result.metrics}
    except DltoolError as error:
        outcome = {"status": "failed", "error": error.lines[0] if error.lines else str(error), "exit_code": int(error.exit_code)}  # fmt: skip
    except KeyboardInterrupt as interrupt:
        which = interrupts.signal_of(interrupt).name
        outcome = {"status": "interrupted", "signal": which, "error": f"stopped by {which}; --resume trains it again"}  # fmt: skip
    except Exception as error:  # a bug must not stop the other trials
        outcome = {"status": "failed", "error": f"internal error: {type(error).__name__}: {error}", "exit_code": 1}  # fmt: skip
    if "run" not in outcome:
        created = sorted(folders_named(Path(runs_dir), name) - before)
        outcome["run"] = str(created[-1]) if created else ""
    outcome["duration_s"] = round(time.perf_counter() - started, 2)
    outcome["host"] = platform.node()
    if _ORPHANED.is_set():  # nobody will read the outcome: say so in the folder, and end
        if outcome["run"]:
            _mark_orphaned(RunDir(Path(outcome["run"])), Path(runs_dir).parent)
        os._exit(1)
    _IN_TRIAL.clear()
    return outcome


def _mark_orphaned(run: RunDir, sweep_folder: Path) -> None:
    """Say in run.json that the trial lost its sweep process (unless it completed)."""
    error = (
        f"orphaned: its sweep process (pid {_PARENT}) died; the trial was stopped, and "
        f"`dltool sweep {sweep_folder} --resume` trains it again"
    )
    with contextlib.suppress(DltoolError), run.writing():
        if run.info().get("status") in (STATUS_RUNNING, STATUS_INTERRUPTED):
            run.mark(STATUS_INTERRUPTED, error=error)


Report = Callable[[Trial, dict[str, Any]], None]
WAIT_FOR_OTHERS_S = 1.0  # how often an idle worker looks for a lost trial of another worker


def execute(directory: SweepDir, jobs: int, report: Report) -> None:
    """Train trials taken from the study until none is left, ``jobs`` at a time; Ctrl-C
    keeps finished trials.

    After Ctrl-C (or SIGTERM) no new trial starts; trials in flight stop at their next
    batch and are recorded as ``interrupted`` with their run folders (marked so too).

    Raises:
        KeyboardInterrupt: after recording every trial that started.
    """
    assert directory.study is not None  # noqa: S101  (a sweep folder always has its study)
    with Heartbeat(directory.study).running() as heartbeat:
        if jobs > 1:
            _execute_parallel(directory, jobs, report, heartbeat)
        else:
            _execute_here(directory, report, heartbeat)
    interrupts.raise_if_requested()


def _execute_here(directory: SweepDir, report: Report, heartbeat: Heartbeat) -> None:
    """One trial at a time, in this process."""
    while True:
        interrupts.raise_if_requested()  # a safe point between trials
        claimed = directory.claim()
        if claimed is None:
            if not _wait_for_others(directory, set()):
                return
            continue
        heartbeat.trial_ids.add(claimed.trial_id)
        try:
            outcome = run_trial(*_arguments(directory, claimed))
            _keep(directory, claimed, outcome, report)
        finally:
            heartbeat.trial_ids.discard(claimed.trial_id)
        if outcome["status"] == "interrupted":
            raise interrupts.interrupt_for(signal.Signals[outcome["signal"]])


def _wait_for_others(directory: SweepDir, mine: set[int]) -> bool:
    """When no trial waits: True (after a pause) while other workers still train some."""
    assert directory.study is not None  # noqa: S101
    if not busy_elsewhere(directory.study, mine):
        return False
    time.sleep(WAIT_FOR_OTHERS_S)
    return True


def _arguments(directory: SweepDir, claimed: Claimed) -> tuple[str, list[str], str, str, Watch | None]:  # fmt: skip
    """``run_trial``'s arguments for a trial."""
    trial = claimed.trial
    assignments = trial.assignments(directory.sweep.overrides)
    return directory.sweep.base, assignments, str(directory.runs_dir), directory.run_name(trial), directory.watch(claimed)  # fmt: skip


def _keep(directory: SweepDir, claimed: Claimed, outcome: dict[str, Any], report: Report) -> None:
    directory.record(claimed, outcome)  # in the study too: an interrupted trial waits again
    if outcome["status"] == "interrupted" and not outcome["run"]:
        return  # stopped before its run folder existed: nothing to show
    report(claimed.trial, outcome)


@dataclass
class _InFlight:
    claimed: Claimed
    existing: set[Path]  # the trial's run folders before it started (from earlier sweeps)
    started: float


def _execute_parallel(directory: SweepDir, jobs: int, report: Report, heartbeat: Heartbeat) -> None:  # fmt: skip
    """At most ``jobs`` trials in flight, so a stop request cancels every trial not started."""
    import multiprocessing

    # spawn: each worker starts its own TensorFlow, which is not fork-safe.
    context = multiprocessing.get_context("spawn")
    stop = context.Value(
        "i", 0, lock=False
    )  # the signal that stopped the sweep, for the workers; 0 = none
    in_flight: dict[Future[dict[str, Any]], _InFlight] = {}
    drained = False  # no trial waited at the last look

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(stop, os.getpid(), worker_threads(jobs)))  # fmt: skip

    pool = new_pool()
    try:
        while True:
            if interrupts.stop_requested() and not stop.value:
                stop.value = interrupts.REQUEST.signum or signal.SIGINT
            drained = False
            while len(in_flight) < jobs and not stop.value:
                claimed = directory.claim()
                if claimed is None:
                    drained = True
                    break
                heartbeat.trial_ids.add(claimed.trial_id)
                name = directory.run_name(claimed.trial)
                existing = folders_named(directory.runs_dir, name)
                try:
                    future = pool.submit(run_trial, *_arguments(directory, claimed))
                except BrokenProcessPool:
                    # A worker died (killed, out of memory): the executor refuses new work, so
                    # the next trials get a new one; the trials it was running count as failed.
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    future = pool.submit(run_trial, *_arguments(directory, claimed))
                in_flight[future] = _InFlight(claimed, existing, time.perf_counter())
            if not in_flight:
                if stop.value or not drained:
                    break  # stopped: the rest never started
                mine = set(heartbeat.trial_ids)
                if _wait_for_others(directory, mine):
                    continue
                break
            done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                flight = in_flight.pop(future)
                heartbeat.trial_ids.discard(flight.claimed.trial_id)
                _collect(directory, flight, future, report)
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
        name = directory.run_name(flight.claimed.trial)
        created = sorted(folders_named(directory.runs_dir, name) - flight.existing)
        status = "interrupted" if future is None else "failed"
        outcome = {"status": status, "error": f"worker process died: {error}", "exit_code": 1, "run": str(created[-1]) if created else "", "duration_s": round(time.perf_counter() - flight.started, 2), "host": platform.node()}  # fmt: skip
        if created:
            _mark(RunDir(created[-1]), status, outcome["error"])
    _keep(directory, flight.claimed, outcome, report)


def _mark(run: RunDir, status: str, error: str) -> None:
    """Say in run.json that a run whose process died is not running any more."""
    if (run.path / RUN_JSON).is_file() and run.info().get("status") == STATUS_RUNNING:
        run.mark(status, error=error)


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
