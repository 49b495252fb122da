"""Running a sweep's trials on a Ray cluster (``dltool sweep SWEEP.yaml --ray ADDRESS``).

This process stays the sweep's driver: it owns the study and takes each trial from it
(:meth:`SweepDir.claim`) just before it starts, exactly as for local trials; each trial is
one plain Ray task that calls :func:`dltool.sweep.executor.run_trial`, dltool's own
training (never Ray Train: its Keras path is broken on Keras 3, ray-project/ray#47464).
As many trials are in flight as the cluster has room for (``--cpus-per-trial``,
``--gpus-per-trial``); a Ray worker process imports TensorFlow once and trains many trials.

- Run folders: a node that sees the sweep folder (the same machine, or a shared
  filesystem) writes the trial's folder straight into ``SWEEP/runs/``; any other node
  trains into a temporary folder and sends the finished folder back as an archive, which
  this process unpacks into ``SWEEP/runs/``. A marker file with a random name in
  ``SWEEP/runs/`` tells the two apart.
- Pruning: each epoch's value goes through a small actor on this machine, which writes
  the study (a journal file here, or the database) and asks the pruner.
- A lost node: Ray runs the trial again on another node, up to NODE_RETRIES times; the
  lost attempt's folder, when it is in ``SWEEP/runs/``, is marked failed. After that
  the trial is failed with the reason, never dropped.
- Ctrl-C: no trial starts; Ray cancels the running ones (a KeyboardInterrupt in each
  task, which stops at its next batch and keeps its checkpoint) and they are recorded as
  interrupted, queued for ``--resume``. A second Ctrl-C ends their processes at once.

Ray is an optional extra, imported only here and only by ``--ray``.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import shutil
import signal
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltool import interrupts
from dltool.backend import quiet_stderr
from dltool.errors import InputError, UsageError
from dltool.rundir import STATUS_FAILED, STATUS_RUNNING, RunDir, folders_named
from dltool.sweep.executor import Report, _arguments, _keep, _mark, _wait_for_others, run_trial
from dltool.sweep.folder import SweepDir
from dltool.sweep.pruning import Watch
from dltool.sweep.study import Claimed, Heartbeat

INSTALL = "pip install 'dltool[ray]'"
CONNECT_TIMEOUT_S = 5.0  # an address that does not answer within this is refused (never a hang)
NODE_RETRIES = 2  # a trial whose node is lost runs again on another node at most this often
STOP_GRACE_S = 30  # after Ctrl-C, how long the cancelled trials have to stop at a batch
NODE_ID_CHARACTERS = 12  # trials.csv's node column: the start of Ray's node id (unique)
MARKER_PREFIX = ".dltool-ray-"  # SWEEP/runs/.dltool-ray-RANDOM: this node sees the folder


@dataclass(frozen=True)
class RayOptions:
    """Where and how big: ``--ray ADDRESS``, ``--cpus-per-trial``, ``--gpus-per-trial``."""

    address: str  # HOST:PORT of a running cluster's head, ray://HOST:PORT, auto, or local
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def flags(self) -> str:
        """The options again, for the line that says how to continue."""
        extra = f" --cpus-per-trial {self.cpus_per_trial:g}" if self.cpus_per_trial != 1 else ""
        extra += f" --gpus-per-trial {self.gpus_per_trial:g}" if self.gpus_per_trial else ""
        return f"--ray {self.address}{extra}"


def _ray() -> Any:
    """Raises: UsageError: Ray is not installed (the line says how to install it)."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray: Ray is not installed (install it with: {INSTALL})") from None
    return ray


def require_ray() -> None:
    """Raises: UsageError: Ray is not installed."""
    _ray()


def _host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of ``HOST:PORT`` or ``ray://HOST:PORT``; None for auto and local."""
    if address in ("auto", "local"):
        return None
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--ray: expected HOST:PORT of a Ray cluster's head, ray://HOST:PORT, auto or local (received {address!r})"
        )
    return host.strip("[]"), int(port)


def _require_reachable(address: str) -> None:
    """Raises: InputError: nothing answers at the address within CONNECT_TIMEOUT_S."""
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            f"--ray {address}: cannot reach the Ray cluster ({reason}); start one with "
            "`ray start --head`, or use --ray local"
        ) from None


@contextlib.contextmanager
def connected(options: RayOptions | None) -> Iterator[Any]:
    """Connected to the cluster (``local``: a private Ray on this machine) while the body
    runs; the ``ray`` module, or None without ``options``. Before any sweep folder is made.
    A process that is connected already (``ray.init`` in a notebook) keeps its connection.

    Raises:
        UsageError: Ray is missing or the address is malformed.
        InputError: the cluster cannot be reached.
    """
    if options is None:
        yield None
        return
    ray = _ray()
    if ray.is_initialized():  # the caller connected (a notebook, a test): theirs to end
        address = ray.get_runtime_context().gcs_address
        if _host_port(options.address) not in (None, _host_port(address)):
            raise UsageError(f"--ray {options.address}: this process is connected to the Ray cluster at {address} already")  # fmt: skip
        yield ray
        return
    _require_reachable(options.address)
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        # Ray's C++ code writes to descriptor 2 while it connects (a line a second while it
        # retries an address that answers but is no Ray): dltool says in one line what went wrong
        with quiet_stderr():
            if options.address == "local":
                from dltool.backend import usable_cores

                ray.init(include_dashboard=False, num_cpus=usable_cores(), **quiet)
            else:
                ray.init(address=options.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        line = " ".join(str(error).split())[:300]
        raise InputError(
            f"--ray {options.address}: cannot connect to the Ray cluster: {line}"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


# ------------------------------------------------------------------- on a node


def pack_run(folder: Path) -> bytes:
    """A run folder as a gzipped tar archive (what a node without the sweep folder sends back)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return buffer.getvalue()


def unpack_run(data: bytes, runs_dir: Path) -> Path:
    """Unpack :func:`pack_run`'s archive into ``runs_dir``; returns the run folder.

    Raises:
        InputError: the archive holds anything but one folder of plain files.
    """
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = {member.name.split("/", 1)[0] for member in archive.getmembers()}
        if len(names) != 1:
            raise InputError(f"a trial's archive holds {len(names)} folders, not one")
        (name,) = names
        target = runs_dir / name
        if target.exists():
            raise InputError(f"{target}: a trial's folder came back, but the name is taken")
        # unpacked beside its place, then renamed: a full disk leaves no half run folder
        scratch = runs_dir / f".{name}.{secrets.token_hex(4)}.unpacking"
        try:
            archive.extractall(scratch, filter="data")  # no links out, no absolute paths
            (scratch / name).rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


class _RemoteWatch:
    """A Watch that asks the sweep machine's actor (the study may be a file only it sees)."""

    def __init__(self, desk: Any, watch: Watch) -> None:
        self.desk, self.watch = desk, watch

    def __call__(self, epoch: int, logs: dict[str, float]) -> bool:
        import ray

        return bool(ray.get(self.desk.judge.remote(self.watch, epoch, dict(logs))))


class _PruningDesk:
    """A Ray actor on the sweep's machine: records a trial's epoch values, asks the pruner."""

    def judge(self, watch: Watch, epoch: int, logs: dict[str, float]) -> bool:
        return watch(epoch, logs)


def trial_task(arguments: tuple[Any, ...], marker: str, desk: Any = None) -> dict[str, Any]:
    """One trial on whichever node Ray chose: :func:`run_trial`, and where it ran.

    ``marker``: the marker file's name; where ``SWEEP/runs/MARKER`` is not visible the
    trial trains in a temporary folder and its folder comes back as ``archive``.
    """
    import ray

    base, assignments, runs_dir, name, watch = arguments
    if watch is not None and desk is not None:
        watch = _RemoteWatch(desk, watch)
    node = {"node": ray.get_runtime_context().get_node_id()[:NODE_ID_CHARACTERS]}
    if (Path(runs_dir) / marker).is_file():
        return {**run_trial(base, assignments, runs_dir, name, watch), **node}
    with tempfile.TemporaryDirectory(prefix="dltool-trial-") as local:
        outcome = run_trial(base, assignments, local, name, watch)
        if outcome.get("run"):
            outcome["archive"] = pack_run(Path(outcome["run"]))
    return {**outcome, **node}


# ------------------------------------------------------------------- the driver


@dataclass
class _InFlight:
    claimed: Claimed
    existing: set[Path]  # the trial's run folders before it started
    started: float


def slots(ray: Any, options: RayOptions) -> int:
    """How many trials fit on the cluster at once (at least 1: the rest wait in Ray's queue)."""
    resources = ray.cluster_resources()
    fits = (
        [int(resources.get("CPU", 0) // options.cpus_per_trial)] if options.cpus_per_trial else []
    )
    if options.gpus_per_trial:
        fits.append(int(resources.get("GPU", 0) // options.gpus_per_trial))
    return max(1, min(fits) if fits else 1)


def execute_on_ray(directory: SweepDir, options: RayOptions, report: Report) -> None:
    """Train trials taken from the study on the cluster until none is left.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once every trial that started is recorded.
        UsageError, InputError: Ray is missing or the cluster cannot be reached.
    """
    assert directory.study is not None  # noqa: S101  (a sweep folder always has its study)
    with connected(options) as ray, Heartbeat(directory.study).running() as heartbeat:
        directory.runs_dir.mkdir(parents=True, exist_ok=True)
        marker = MARKER_PREFIX + secrets.token_hex(8)
        _write_marker(directory.runs_dir / marker)
        try:
            _drive(ray, directory, options, report, heartbeat, marker)
        finally:
            (directory.runs_dir / marker).unlink(missing_ok=True)
    interrupts.raise_if_requested()


def _write_marker(path: Path) -> None:
    path.write_text("a Ray node that sees this file writes its trials' run folders here\n")


def _drive(ray: Any, directory: SweepDir, options: RayOptions, report: Report, heartbeat: Heartbeat, marker: str) -> None:  # fmt: skip
    task = ray.remote(trial_task).options(
        num_cpus=options.cpus_per_trial,
        num_gpus=options.gpus_per_trial,
        max_retries=NODE_RETRIES,  # system failures only (a lost node or worker), not a bug
        retry_exceptions=False,
    )
    desk = _desk(ray) if directory.sweep.prune is not None else None
    room = slots(ray, options)
    in_flight: dict[Any, _InFlight] = {}
    try:
        while True:
            while len(in_flight) < room and not interrupts.stop_requested():
                claimed = directory.claim()
                if claimed is None:
                    break
                heartbeat.trial_ids.add(claimed.trial_id)
                existing = folders_named(directory.runs_dir, directory.run_name(claimed.trial))
                reference = task.remote(_arguments(directory, claimed), marker, desk)
                in_flight[reference] = _InFlight(claimed, existing, time.perf_counter())
            if interrupts.stop_requested():
                _cancel(ray, in_flight, force=False)
                _collect_all(ray, directory, in_flight, report, STOP_GRACE_S)
                return
            if not in_flight:
                if _wait_for_others(directory, set()):  # another machine's trial may be lost
                    continue
                return
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2)
            for reference in done:
                flight = in_flight.pop(reference)
                heartbeat.trial_ids.discard(flight.claimed.trial_id)
                _collect(ray, directory, flight, reference, report)
    except KeyboardInterrupt:  # a second Ctrl-C: end the trials' processes now
        with interrupts.deferred_signals():
            _cancel(ray, in_flight, force=True)
            _collect_all(ray, directory, in_flight, report, 5)
        raise


def _desk(ray: Any) -> Any:
    """The pruning actor, on this machine (the study's journal file is here)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(_PruningDesk).options(num_cpus=0, scheduling_strategy=here).remote()


def _cancel(ray: Any, in_flight: dict[Any, _InFlight], force: bool) -> None:
    for reference in in_flight:
        with contextlib.suppress(Exception):
            ray.cancel(reference, force=force)


def _collect_all(ray: Any, directory: SweepDir, in_flight: dict[Any, _InFlight], report: Report, seconds: float) -> None:  # fmt: skip
    """Record every trial in flight as it ends (cancelled: interrupted), within ``seconds``."""
    deadline = time.monotonic() + seconds
    while in_flight:
        left = max(0.0, deadline - time.monotonic())
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=min(left, 0.5))
        if not done and left <= 0:
            _cancel(ray, in_flight, force=True)  # end their processes: nothing writes after this
            for reference, flight in list(in_flight.items()):
                del in_flight[reference]
                _collect(ray, directory, flight, None, report)
            return
        for reference in done:
            _collect(ray, directory, in_flight.pop(reference), reference, report)


def _collect(ray: Any, directory: SweepDir, flight: _InFlight, reference: Any, report: Report) -> None:  # fmt: skip
    """Record a trial that ended; ``reference`` None: it did not stop in time after Ctrl-C."""
    name = directory.run_name(flight.claimed.trial)
    try:
        if reference is None:
            raise TimeoutError("it did not stop in time and was ended")
        outcome = ray.get(reference)
    except Exception as error:
        outcome = _lost(ray, error, flight)
    archive = outcome.pop("archive", None)
    if archive is not None:
        try:
            outcome["run"] = str(unpack_run(archive, directory.runs_dir))
        except (InputError, OSError, tarfile.TarError) as error:  # recorded, never lost
            outcome.update(status=STATUS_FAILED, exit_code=1, run="", error=f"its run folder came back but could not be unpacked: {error}")  # fmt: skip
    elif outcome.get("run") and not Path(outcome["run"]).is_dir():
        outcome["run"] = ""  # trained on a node whose folder is gone with it
    if not outcome.get("run"):
        created = sorted(folders_named(directory.runs_dir, name) - flight.existing)
        outcome["run"] = str(created[-1]) if created else ""
    _mark_lost_attempts(directory, name, flight, outcome)
    _keep(directory, flight.claimed, outcome, report)


def _lost(ray: Any, error: Exception, flight: _InFlight) -> dict[str, Any]:
    """The outcome of a trial whose task did not return: cancelled, or its node lost."""
    exceptions = ray.exceptions
    took = round(time.perf_counter() - flight.started, 2)
    if interrupts.stop_requested() or isinstance(error, exceptions.TaskCancelledError | TimeoutError):  # fmt: skip
        which = signal.Signals(interrupts.REQUEST.signum or signal.SIGINT).name
        when = "was cancelled" if isinstance(error, exceptions.TaskCancelledError) else "was ended: it did not stop in time"  # fmt: skip
        return {"status": "interrupted", "signal": which, "error": f"stopped by {which}: its Ray task {when}; --resume trains it again", "run": "", "duration_s": took, "host": ""}  # fmt: skip
    if isinstance(error, exceptions.NodeDiedError | exceptions.WorkerCrashedError | exceptions.OwnerDiedError):  # fmt: skip
        why = f"its Ray node or worker was lost {NODE_RETRIES + 1} times (tried again up to {NODE_RETRIES} times): {type(error).__name__}"  # fmt: skip
    else:
        why = f"its Ray task failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
    return {"status": STATUS_FAILED, "error": why, "exit_code": 1, "run": "", "duration_s": took, "host": ""}  # fmt: skip


def _mark_lost_attempts(directory: SweepDir, name: str, flight: _InFlight, outcome: dict[str, Any]) -> None:  # fmt: skip
    """Say in run.json what became of the trial's folders whose process died (they still say
    running): the trial's own folder takes its outcome; an attempt lost with its node is
    failed, naming the folder of the attempt that replaced it."""
    kept = Path(outcome["run"]).resolve() if outcome.get("run") else None
    for folder in sorted(folders_named(directory.runs_dir, name) - flight.existing):
        run = RunDir(folder)
        with contextlib.suppress(Exception):
            if run.info().get("status") != STATUS_RUNNING:
                continue
            if kept is not None and folder.resolve() == kept:
                _mark(run, outcome["status"], outcome.get("error") or "its Ray task ended")
            else:
                again = f"; tried again as {kept.name}" if kept is not None else ""
                _mark(run, STATUS_FAILED, f"its Ray node was lost mid-trial{again}")
