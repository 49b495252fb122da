"""A sweep's Optuna study: where it is stored, how a worker takes a trial, what a trial records.

Every trial of a sweep is planned when its study is created, as a waiting Optuna trial
carrying its dltool number and seed (and, for grid and random, its values), in order. A
worker takes the oldest waiting trial: Optuna moves it to running only if it is still
waiting (a row lock in PostgreSQL, the order of the journal file on one machine), so two
workers never train the same trial. A tpe trial gets its values from the sampler when it
is taken, so the sampler has learnt from every trial finished by then.

Storage: a journal file in the sweep folder on one machine (each change is one appended
line: a Ctrl-C or SIGKILL loses nothing written), or PostgreSQL for many machines. There a
worker records a heartbeat for each trial it trains; a trial whose heartbeat stops (its
worker was killed) is failed by the next worker that looks, and queued again.

Nothing here imports TensorFlow; optuna itself is imported only by sweep commands.
Just over 400 lines because it is the one place that reads and writes the study: storage,
creating and loading it, taking, finishing and re-queueing trials, and heartbeats.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat  # public in spirit: RDBStorage's base
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from dltool.errors import InputError, UsageError
from dltool.rundir import STATUS_COMPLETED, STATUS_INTERRUPTED, STATUS_PRUNED
from dltool.sweep import pruning
from dltool.sweep.spec import SweepConfig, Trial

optuna.logging.set_verbosity(optuna.logging.WARNING)  # dltool prints its own line per trial


@contextlib.contextmanager
def _experimental() -> Iterator[None]:
    """Optuna marks multivariate TPE, constant liar and heartbeats experimental, and warns at
    each use; they are what we chose (see COMPONENTS-NOTES), so the warning is noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


DATABASE_SCHEMES = ("postgresql://", "postgresql+psycopg://")
HEARTBEAT_S = 1  # a worker records a heartbeat for each trial it trains this often
STALE_AFTER_S = 6  # a running trial without a heartbeat for this long was lost with its worker

# Trial attributes (Optuna user attrs): dltool's trial number, seed and values, the worker
# that took it and, once it ended, what happened: status, run folder, final metrics, error.
TRIAL = "dltool.trial"
SEED = "dltool.seed"
VALUES = "dltool.values"
WORKER = "dltool.worker"  # {"host": ..., "pid": ...}
OUTCOME = "dltool.outcome"
# Study attributes: the sweep as run, the base experiment resolved, the base file's path
# (relative to the folder the study was created from), the trials' run-name prefix.
SWEEP = "dltool.sweep"
BASE = "dltool.base"
BASE_FILE = "dltool.base_file"
PREFIX = "dltool.prefix"
READY = "dltool.ready"  # every trial is queued: a joining worker may start


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna keeps it in a private attribute: taking a
    waiting trial without Optuna's fallback to a new one, and heartbeats, need it)."""
    return study._storage


def heartbeats(storage: BaseStorage) -> BaseHeartbeat | None:
    """The storage, where it keeps heartbeats (PostgreSQL), else None (a journal file)."""
    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None:
        return storage
    return None


def is_database(storage: str) -> bool:
    return storage.startswith(DATABASE_SCHEMES)


def shown(storage: str) -> str:
    """A storage as it may be printed: a database URL without its password."""
    if not is_database(storage):
        return storage
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        return make_url(storage).render_as_string(hide_password=True)
    return storage.split("@")[-1]


def require_database_url(storage: str) -> None:
    """Raises: UsageError: ``storage`` is not a PostgreSQL URL."""
    if not is_database(storage):
        raise UsageError(
            f"--storage: expected postgresql://USER@HOST:PORT/DATABASE (received {storage!r}); "
            "on one machine a sweep keeps its study in its own folder, with no --storage"
        )


_OPENED: dict[str, BaseStorage] = {}  # one storage per process and place (connection pools)


def open_storage(storage: str) -> BaseStorage:
    """The Optuna storage at ``storage``: a PostgreSQL URL or a journal file's path.

    Raises:
        InputError: the database cannot be reached, refuses the login, or its driver is missing.
    """
    if storage in _OPENED:
        return _OPENED[storage]
    if not is_database(storage):
        opened: BaseStorage = JournalStorage(JournalFileBackend(storage))
    else:
        opened = _open_database(storage)
    _OPENED[storage] = opened
    return opened


def _open_database(url: str) -> RDBStorage:
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver for postgresql://)
    except ImportError:
        raise InputError(
            f"{shown(url)}: the PostgreSQL driver is not installed (pip install 'dltool[postgres]')"
        ) from None
    try:
        with _experimental():
            return RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}},
                heartbeat_interval=HEARTBEAT_S,
                grace_period=STALE_AFTER_S,
                heartbeat_stale_trial_callback=queue_again,  # another worker trains it
            )
    except Exception as error:  # SQLAlchemy wraps the driver's OperationalError
        raise InputError(f"{shown(url)}: cannot use the database: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(error).__name__


def direction(sweep: SweepConfig) -> Literal["minimize", "maximize"]:
    return "maximize" if sweep.maximize else "minimize"


def sampler(sweep: SweepConfig, joined: bool = False) -> optuna.samplers.BaseSampler:
    """TPE for ``tpe`` (seeded; a joining worker mixes in its host and pid, or every machine
    would propose the same first points); grid and random trials are planned, not sampled."""
    if sweep.tpe is None:
        return optuna.samplers.RandomSampler(seed=0)
    seed = sweep.tpe.seed
    if joined:
        seed = hash((seed, platform.node(), os.getpid())) % 2**31
    with _experimental():
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=sweep.tpe.startup_trials,
            multivariate=True,
            constant_liar=True,  # parallel workers do not propose the same point (optuna #4714)
        )


def find(storage: BaseStorage, name: str) -> bool:
    """Whether the storage holds a study named ``name``."""
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def names(storage: BaseStorage) -> list[str]:
    return sorted(summary.study_name for summary in optuna.get_all_study_summaries(storage))


def require_study(storage: BaseStorage, name: str, where: str) -> None:
    """Raises: InputError: no study ``name`` (the line lists those there are)."""
    if find(storage, name):
        return
    there = names(storage)
    listed = f"studies there: {', '.join(there)}" if there else "it holds no study"
    raise InputError(f"{where}: no study named {name!r} ({listed})")


def create(
    storage: BaseStorage,
    sweep: SweepConfig,
    trials: list[Trial],
    attrs: dict[str, Any],
    epochs: int,
) -> optuna.Study:
    """A new study with every trial queued in order. Raises DuplicatedStudyError if it exists."""
    study = optuna.create_study(
        study_name=sweep.name,
        storage=storage,
        direction=direction(sweep),
        sampler=sampler(sweep),
        pruner=pruning.pruner(pruning.prune_spec(sweep), epochs),
    )
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for trial in trials:
        study.enqueue_trial({}, user_attrs=_planned(trial))
    study.set_user_attr(READY, True)
    return study


def load(
    storage: BaseStorage, sweep: SweepConfig, epochs: int, joined: bool = False
) -> optuna.Study:
    return optuna.load_study(
        study_name=sweep.name,
        storage=storage,
        sampler=sampler(sweep, joined),
        pruner=pruning.pruner(pruning.prune_spec(sweep), epochs),
    )


def wait_until_ready(study: optuna.Study, seconds: float = 60) -> None:
    """Raises: InputError: the study's trials are still not all queued after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not study.user_attrs.get(READY):
        if time.monotonic() > deadline:
            raise InputError(
                f"study {study.study_name!r}: its trials were never all queued (the process "
                "that created it stopped early); create it again under another name"
            )
        time.sleep(0.5)


def _planned(trial: Trial) -> dict[str, Any]:
    return {TRIAL: trial.number, SEED: trial.seed, VALUES: trial.values}


@dataclass
class Claimed:
    """A trial a worker took: dltool's trial, and Optuna's id and number for it."""

    trial: Trial
    trial_id: int
    number: int


def claim(study: optuna.Study, sweep: SweepConfig) -> Claimed | None:
    """Take the oldest waiting trial (None when none waits); a tpe trial gets its values now."""
    with _experimental():
        optuna.storages.fail_stale_trials(study)  # a killed worker's trials wait again
    storage = storage_of(study)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        trial_id = waiting._trial_id
        attrs = waiting.user_attrs
        values = dict(attrs.get(VALUES) or {})
        if sweep.tpe is not None:
            values = _suggest(optuna.Trial(study, trial_id), sweep)
            storage.set_trial_user_attr(trial_id, VALUES, values)
        storage.set_trial_user_attr(trial_id, WORKER, {"host": platform.node(), "pid": os.getpid()})
        beating = heartbeats(storage)
        if beating is not None:
            beating.record_heartbeat(trial_id)  # a trial without one is never stale
        trial = Trial(int(attrs[TRIAL]), values, int(attrs[SEED]))
        return Claimed(trial, trial_id, waiting.number)
    return None


def _suggest(trial: optuna.Trial, sweep: SweepConfig) -> dict[str, Any]:
    """The tpe sampler's values for ``trial`` (a queued retry keeps its earlier values)."""
    assert sweep.tpe is not None  # noqa: S101  (only tpe trials are sampled)
    values: dict[str, Any] = {}
    for key, distribution in sweep.tpe.params.items():
        if hasattr(distribution, "choice"):
            values[key] = trial.suggest_categorical(key, distribution.choice)
        elif hasattr(distribution, "uniform"):
            values[key] = trial.suggest_float(key, *distribution.uniform)
        elif hasattr(distribution, "log_uniform"):
            values[key] = trial.suggest_float(key, *distribution.log_uniform, log=True)
        else:
            values[key] = trial.suggest_int(key, *distribution.int_uniform)
    return values


def busy_elsewhere(study: optuna.Study, mine: set[int]) -> bool:
    """Whether trials not in ``mine`` are running: other workers may yet fail one, to retry."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(t._trial_id not in mine for t in running)


def finish(
    study: optuna.Study, claimed: Claimed, outcome: dict[str, Any], value: float | None
) -> None:
    """Record how a trial ended; an interrupted one is queued again for any worker."""
    storage = storage_of(study)
    try:
        storage.set_trial_user_attr(claimed.trial_id, OUTCOME, outcome)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # failed as stale meanwhile (its heartbeats did not arrive): queued already
    status = outcome["status"]
    if status == STATUS_COMPLETED and value is not None and math.isfinite(value):
        study.tell(claimed.number, value, skip_if_finished=True)
    elif status == STATUS_PRUNED:
        study.tell(claimed.number, state=TrialState.PRUNED, skip_if_finished=True)
    else:
        study.tell(claimed.number, state=TrialState.FAIL, skip_if_finished=True)
    if status == STATUS_INTERRUPTED:
        queue_again(study, storage.get_trial(claimed.trial_id))


def queue_again(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a trial's point again, with its number and seed (and a tpe trial's values); also
    Optuna's callback for a trial it failed because its heartbeat stopped."""
    attrs = trial.user_attrs
    if TRIAL not in attrs:
        return  # not one of dltool's trials
    study.enqueue_trial(
        dict(trial.params),
        user_attrs={TRIAL: attrs[TRIAL], SEED: attrs[SEED], VALUES: attrs.get(VALUES) or {}},
    )


def stale_outcome(trial: FrozenTrial) -> dict[str, Any]:
    worker = trial.user_attrs.get(WORKER) or {}
    where = f"{worker.get('host', '?')} (pid {worker.get('pid', '?')})"
    return {
        "status": "failed",
        "run": "",
        "error": f"its worker on {where} stopped (no heartbeat); the trial was queued again",
        "host": worker.get("host"),
    }


def recover(study: optuna.Study, trials: list[Trial], alone: bool) -> int:
    """Before ``--resume``: queue again every trial that did not complete or get pruned, and
    any of ``trials`` (the plan) that a process killed while creating the study never queued.

    ``alone``: this process holds the sweep folder's lock and the study is in that folder,
    so a trial still marked running was lost with a killed process. Returns how many trials
    were queued.
    """
    storage = storage_of(study)
    latest: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        if alone and trial.state == TrialState.RUNNING:
            storage.set_trial_user_attr(trial._trial_id, OUTCOME, stale_outcome(trial))
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            trial = storage.get_trial(trial._trial_id)
        number = trial.user_attrs.get(TRIAL)
        if isinstance(number, int):
            latest[number] = trial
    queued = 0
    for trial in latest.values():
        if trial.state in (TrialState.WAITING, TrialState.RUNNING):
            continue  # queued already, or trained by another worker now
        outcome = trial.user_attrs.get(OUTCOME) or {}
        if outcome.get("status") in (STATUS_COMPLETED, STATUS_PRUNED):
            continue  # kept (a completed trial without the sweep's metric is FAIL to Optuna)
        queue_again(study, trial)
        queued += 1
    for planned in trials:
        if planned.number not in latest:
            study.enqueue_trial({}, user_attrs=_planned(planned))
            queued += 1
    study.set_user_attr(READY, True)
    return queued


def attempts(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial of the study that is one of dltool's, oldest first."""
    return [t for t in study.get_trials(deepcopy=False) if isinstance(t.user_attrs.get(TRIAL), int)]


class Heartbeat:
    """Records a heartbeat every HEARTBEAT_S for each trial this worker trains (PostgreSQL)."""

    def __init__(self, study: optuna.Study) -> None:
        self.storage = heartbeats(storage_of(study))
        self.trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.storage is not None:
            self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        assert self.storage is not None  # noqa: S101  (started only then)
        while not self._stop.wait(HEARTBEAT_S):
            for trial_id in list(self.trial_ids):
                with contextlib.suppress(Exception):  # a lost connection: the next beat retries
                    self.storage.record_heartbeat(trial_id)

    @contextlib.contextmanager
    def running(self) -> Iterator[Heartbeat]:
        if self._thread is not None:
            self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
