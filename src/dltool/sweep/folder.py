"""A sweep's folder: sweep.yaml, study.journal, trials.csv, best.json, sweep.png and runs/.

The study (:mod:`.study`) is the record of every trial; trials.csv, best.json and the plot
are rewritten from it, so on many machines they show every machine's trials.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltool.errors import ConfigError, InputError, UsageError
from dltool.metrics import SPLITS, higher_is_better
from dltool.rundir import (
    STATUS_COMPLETED,
    STATUS_INTERRUPTED,
    STATUS_PRUNED,
    RunDir,
    write_csv,
    write_json,
    write_yaml,
)
from dltool.sweep import study as studies
from dltool.sweep.spec import SweepConfig, Trial, load_sweep, plan

if TYPE_CHECKING:
    import optuna

    from dltool.config import ExperimentConfig

SWEEP_FILE = "sweep.yaml"  # the sweep file as run, with the file it came from
TRIALS = "trials.csv"  # a row per finished or interrupted trial
BEST = "best.json"  # the best completed trial
PLOT = "sweep.png"
RUNS = "runs"  # the trials' run folders
JOURNAL = "study.journal"  # the Optuna study, when it is not in a database


class SweepDir:
    """A sweep's folder: sweep.yaml, trials.csv, best.json, sweep.png, runs/."""

    def __init__(
        self,
        path: Path,
        sweep: SweepConfig,
        trials: list[Trial],
        prefix: str,
        study: optuna.Study | None = None,
        storage: str = "",
        epochs: int = 1,
    ) -> None:
        self.path, self.sweep, self.trials = path, sweep, trials
        self.prefix = prefix  # the base experiment's name; trial runs are PREFIX-trialN
        self.results: dict[int, dict[str, Any]] = {}  # finished: completed, pruned or failed
        self.stopped: dict[int, dict[str, Any]] = {}  # interrupted with a run folder
        self.study = study  # None only in tests of the tables
        self.storage = storage  # the journal's path or the database URL (never printed)
        self.epochs = epochs  # the base experiment's training.epochs (pruning's last rung)
        self.hosts: dict[int, str] = {}  # the worker host of each trial's latest attempt

    @property
    def runs_dir(self) -> Path:
        return self.path / RUNS

    def run_name(self, trial: Trial) -> str:
        """The trial's own run name, e.g. ``student-overfit-trial3`` (zero-padded past 9)."""
        suffix = f"-trial{trial.number:0{len(str(len(self.trials)))}d}"
        return self.prefix[: 80 - len(suffix)] + suffix  # run names are at most 80 characters

    def claim(self) -> studies.Claimed | None:
        """The next trial for this worker to train, taken from the study; None when none waits."""
        if self.study is None:
            return None
        claimed = studies.claim(self.study, self.sweep)
        if claimed is not None:
            self.trials[claimed.trial.number - 1] = claimed.trial  # a tpe trial's values
        return claimed

    def watch(self, claimed: studies.Claimed) -> studies.Watch | None:
        """What the trial's training reports after each epoch, when the sweep prunes."""
        spec = studies.prune_spec(self.sweep)
        if spec is None or self.study is None:
            return None
        return studies.Watch(self.storage, self.sweep.name, claimed.trial_id, self.sweep.epoch_key(), spec, self.epochs)  # fmt: skip

    def record(self, claimed: studies.Claimed, outcome: dict[str, Any]) -> None:
        """Keep a trial's outcome in the study and rewrite trials.csv; an interrupted one is
        queued again (for --resume, or for another worker)."""
        if outcome.get("run"):  # where on its host: other machines read it from the study
            outcome = {**outcome, "run": str(Path(outcome["run"]).absolute())}
        self._keep(claimed.trial.number, outcome)
        if self.study is not None:
            value = self.metric_value(outcome, self.sweep.metric)
            studies.finish(self.study, claimed, outcome, value)
        self.write()

    def _keep(self, number: int, outcome: dict[str, Any]) -> None:
        if outcome["status"] == STATUS_INTERRUPTED:
            if outcome.get("run"):
                self.stopped[number] = outcome
        else:
            self.stopped.pop(number, None)
            self.results[number] = outcome
        if outcome.get("host"):
            self.hosts[number] = outcome["host"]

    def refresh(self) -> None:
        """Read every trial's latest outcome (from every worker) back from the study."""
        if self.study is None:
            return
        from optuna.trial import TrialState

        self.results, self.stopped = {}, {}
        for attempt in studies.attempts(self.study):
            number = attempt.user_attrs[studies.TRIAL]
            if not 1 <= number <= len(self.trials):
                continue
            values = attempt.user_attrs.get(studies.VALUES)
            if values and not self.sweep.planned:
                self.trials[number - 1] = Trial(number, values, self.trials[number - 1].seed)
            outcome = attempt.user_attrs.get(studies.OUTCOME)
            if outcome is None and attempt.state == TrialState.FAIL:
                outcome = studies.stale_outcome(attempt)  # its worker was killed
            if outcome is not None:
                self._keep(number, outcome)

    def finished(self) -> int:
        """How many trials completed or were pruned: those --resume keeps."""
        return sum(o["status"] in (STATUS_COMPLETED, STATUS_PRUNED) for o in self.results.values())

    @property
    def trials_file(self) -> Path:
        return self.path / TRIALS

    def metric_value(self, outcome: dict[str, Any], key: str) -> float | None:
        """A trial's final ``split.metric``, if it has a number for it."""
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
        keys = self.sweep.params
        values, gaps = self._columns()
        header = ["trial", *keys, "seed", "status", *values, *gaps, "duration_s", "run", "error", "host"]  # fmt: skip
        rows = []
        for trial in self.trials:
            outcome = self.results.get(trial.number) or self.stopped.get(trial.number)
            if outcome is None:
                continue
            varied = [json.dumps(trial.values.get(k)) if isinstance(trial.values.get(k), list | dict) else trial.values.get(k) for k in keys]  # fmt: skip
            rows.append([trial.number, *varied, trial.seed, outcome["status"], *(self.metric_value(outcome, c) for c in values), *(self._gap(outcome, c.split(".", 1)[1]) for c in gaps), outcome.get("duration_s"), Path(outcome.get("run", "")).name, outcome.get("error", ""), outcome.get("host", "")])  # fmt: skip
        return header, rows

    def _gap(self, outcome: dict[str, Any], name: str) -> float | None:
        """Positive = the model does better on data it trained on: overfitting."""
        train_value = self.metric_value(outcome, f"train.{name}")
        validation_value = self.metric_value(outcome, f"validation.{name}")
        if train_value is None or validation_value is None:
            return None
        if higher_is_better(name):
            return train_value - validation_value
        return validation_value - train_value

    def best(self) -> dict[str, Any] | None:
        scored = [
            (self.metric_value(o, self.sweep.metric), n)
            for n, o in self.results.items()
            if o["status"] == STATUS_COMPLETED  # never a pruned trial
        ]
        scored = [(v, n) for v, n in scored if v is not None and math.isfinite(v)]
        if not scored:
            return None
        value, number = (max if self.sweep.maximize else min)(scored)
        trial = self.trials[number - 1]
        return {"trial": number, "metric": self.sweep.metric, "value": value, "values": trial.values, "seed": trial.seed, "run": self.results[number].get("run"), "host": self.results[number].get("host")}  # fmt: skip

    def write(self) -> None:
        """trials.csv and best.json, from the study's record of every trial."""
        self.refresh()
        header, rows = self.rows()
        write_csv(self.path / TRIALS, header, rows)
        best = self.best()
        if best is not None:
            write_json(self.path / BEST, best)


def _base(sweep: SweepConfig) -> ExperimentConfig:
    from dltool.config import load_config

    return load_config(Path(sweep.base), sweep.overrides)  # also validates the base


def _check_trial_keys(sweep: SweepConfig, trials: list[Trial]) -> None:
    """The trial keys must fit the base config (a tpe trial's values: one draw)."""
    from dltool.config import load_config

    first = trials[0]
    if sweep.tpe is not None:
        rng = np.random.default_rng(0)
        values = {k: d.draw(rng) for k, d in sweep.tpe.params.items()}
        first = Trial(first.number, values, first.seed)
    load_config(Path(sweep.base), first.assignments(sweep.overrides))


def _check_prune(sweep: SweepConfig, base: ExperimentConfig, source: str) -> None:
    """Pruning watches the metric per epoch: validation and test metrics need validation data."""
    if sweep.prune is None or sweep.metric.startswith("train."):
        return
    if base.data.validation_split <= 0:
        raise ConfigError(
            f"{source}: prune: needs validation data to judge {sweep.metric} after each epoch "
            f"(received data.validation_split=0 in the base; expected data.validation_split > 0, "
            f"e.g. overrides: [data.validation_split=0.2], or metric: train.{sweep.metric.split('.', 1)[1]})"
        )


def study_attributes(sweep: SweepConfig, base: ExperimentConfig) -> dict[str, Any]:
    """What a study records about its sweep, for the workers that join it."""
    from dltool.config import resolved_dict

    base_file = Path(sweep.base)
    with contextlib.suppress(ValueError):
        base_file = base_file.relative_to(Path.cwd())
    recorded = {k: v for k, v in sweep.model_dump(mode="json").items() if k != "base"}
    return {
        studies.SWEEP: recorded,
        studies.BASE: resolved_dict(base),
        studies.BASE_FILE: str(base_file),
        studies.PREFIX: base.name,
    }


def differences(recorded: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """``KEY (here X, in the study Y)`` for each dotted key whose value differs."""
    from dltool.runs import flatten

    theirs, mine = flatten(recorded), flatten(ours)
    keys = sorted(set(theirs) | set(mine))
    return [
        f"{k} (here {json.dumps(mine.get(k))}, in the study {json.dumps(theirs.get(k))})"
        for k in keys
        if mine.get(k) != theirs.get(k)
    ]


def _refuse_different(name: str, where: str, recorded: dict[str, Any], ours: dict[str, Any]) -> None:  # fmt: skip
    """Raises: ConfigError: the study was made by a different sweep or base experiment."""
    differ = differences(recorded[studies.SWEEP], ours[studies.SWEEP])
    differ += differences(recorded[studies.BASE], ours[studies.BASE])
    if differ:
        raise ConfigError(
            f"{where}: study {name!r} exists with a different sweep or base experiment: "
            f"{'; '.join(differ)} (name the sweep differently to start a new study)"
        )


def _write_sweep_file(folder: Path, sweep: SweepConfig, source: str, storage: str | None) -> None:
    recorded = {**sweep.model_dump(mode="json"), "source": source}
    if storage is not None:
        recorded["storage"] = studies.shown(storage)  # without its password
    write_yaml(folder / SWEEP_FILE, recorded)


def create(
    sweep: SweepConfig, source: Path, runs_dir: Path, storage: str | None = None
) -> SweepDir:
    """A new sweep folder and its study: in the folder's journal, or (``storage``) in a
    database, where an existing study of the same sweep is joined instead.

    Raises:
        ConfigError: the base or a trial key is refused, or the database holds a study of
            that name made by a different sweep (its keys named).
        InputError: the database cannot be used.
    """
    import optuna

    base = _base(sweep)
    trials = plan(sweep, base.seed)
    _check_trial_keys(sweep, trials)
    _check_prune(sweep, base, str(source))
    attrs = study_attributes(sweep, base)
    epochs = base.training.epochs
    database = studies.open_storage(storage) if storage is not None else None
    if database is not None and studies.find(database, sweep.name):
        _refuse_different(sweep.name, studies.shown(str(storage)), studies.load(database, sweep, epochs).user_attrs, attrs)  # fmt: skip
    folder = RunDir.create(runs_dir, f"{sweep.name}-sweep").path
    _write_sweep_file(folder, sweep, str(source), storage)
    spec = storage if storage is not None else str(folder / JOURNAL)
    opened = database or studies.open_storage(spec)
    try:
        study = studies.create(opened, sweep, trials, attrs, epochs)
    except optuna.exceptions.DuplicatedStudyError:  # found in the database: join it
        study = studies.load(opened, sweep, epochs, joined=True)
        _refuse_different(sweep.name, studies.shown(spec), study.user_attrs, attrs)
        studies.wait_until_ready(study)
    return SweepDir(folder, sweep, trials, base.name, study, spec, epochs)


def _recorded_sweep(attrs: dict[str, Any], base: str) -> SweepConfig:
    return SweepConfig.model_validate({**attrs[studies.SWEEP], "base": base})


def join(name: str, storage: str, runs_dir: Path) -> SweepDir:
    """A new sweep folder for this worker in the study ``name`` of the database ``storage``.

    The base experiment is read here, from the path the study recorded (relative to this
    folder), and must resolve to the same config as the study's.

    Raises:
        InputError: the database cannot be used, holds no such study, or the base file is missing.
        ConfigError: the base experiment here differs from the study's (the keys named).
    """
    import optuna

    from dltool.config import load_config, resolved_dict

    where = studies.shown(storage)
    database = studies.open_storage(storage)
    studies.require_study(database, name, where)
    attrs = optuna.load_study(study_name=name, storage=database).user_attrs
    if studies.SWEEP not in attrs:
        raise InputError(f"{where}: study {name!r} was not made by dltool sweep")
    base_file = Path(attrs[studies.BASE_FILE])
    if not base_file.is_file():
        raise InputError(
            f"--join {name}: the study's base experiment {base_file} is not here (looked for "
            f"{base_file.resolve()}); join from a folder that has the same files"
        )
    sweep = _recorded_sweep(attrs, str(base_file.resolve()))
    base = load_config(base_file, sweep.overrides)
    differ = differences(attrs[studies.BASE], resolved_dict(base))
    if differ:
        raise ConfigError(
            f"--join {name}: the base experiment {base_file} differs from the study's: {'; '.join(differ)}"
        )
    epochs = base.training.epochs
    study = studies.load(database, sweep, epochs, joined=True)
    studies.wait_until_ready(study)
    folder = RunDir.create(runs_dir, f"{sweep.name}-sweep").path
    _write_sweep_file(folder, sweep, f"--join {name}", storage)
    return SweepDir(folder, sweep, plan(sweep, base.seed), base.name, study, storage, epochs)


def status(name: str, storage: str, runs_dir: Path) -> SweepDir:
    """Every trial of the study ``name``, from every worker, in a new folder for its tables.

    Raises:
        InputError: the database cannot be used or holds no such study.
    """
    import optuna

    where = studies.shown(storage)
    database = studies.open_storage(storage)
    studies.require_study(database, name, where)
    study = optuna.load_study(study_name=name, storage=database)
    attrs = study.user_attrs
    if studies.SWEEP not in attrs:
        raise InputError(f"{where}: study {name!r} was not made by dltool sweep")
    sweep = _recorded_sweep(attrs, attrs[studies.BASE_FILE])
    base = attrs[studies.BASE]
    trials = plan(sweep, base.get("seed"))
    folder = RunDir.create(runs_dir, f"{name}-status").path
    epochs = int(base.get("training", {}).get("epochs", 1))
    directory = SweepDir(folder, sweep, trials, attrs[studies.PREFIX], study, storage, epochs)
    directory.write()
    return directory


def require_sweep_folder(folder: Path) -> None:
    """Raises: InputError: ``folder`` holds no sweep file."""
    if not (folder / SWEEP_FILE).is_file():
        raise InputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})")


def recorded_storage(folder: Path) -> str | None:
    """The database a sweep folder's study is in (without its password), or None."""
    from dltool.yamlio import YamlProblem, read_yaml_mapping

    try:
        value = read_yaml_mapping(folder / SWEEP_FILE).get("storage")
    except YamlProblem:
        return None  # load_sweep reports the broken file
    return value if isinstance(value, str) else None


def reopen(folder: Path, storage: str | None = None) -> SweepDir:
    """An earlier sweep folder and its study, with every trial that did not complete or
    get pruned queued again (``--resume``).

    Raises:
        InputError: not a sweep folder, no study in it, or its database cannot be used.
        UsageError: its study is in a database and ``storage`` is missing, or the reverse.
        ConfigError: its sweep file or base experiment no longer validates.
    """
    require_sweep_folder(folder)
    recorded = recorded_storage(folder)
    if recorded is not None and storage is None:
        raise UsageError(
            f"{folder}: its study is in the database {recorded}: give --storage with that URL (and its password)"
        )
    if recorded is None and storage is not None:
        raise UsageError(
            f"{folder}: its study is in its own {JOURNAL}: --resume takes no --storage"
        )
    sweep = load_sweep(folder / SWEEP_FILE, recorded=True)
    base = _base(sweep)
    spec = storage if storage is not None else str(folder / JOURNAL)
    if storage is None and not (folder / JOURNAL).is_file():
        raise InputError(
            f"{folder}: no {JOURNAL} (made by an older dltool); start the sweep again from its sweep file"
        )
    database = studies.open_storage(spec)
    if storage is not None:
        studies.require_study(database, sweep.name, studies.shown(storage))
    epochs = base.training.epochs
    study = studies.load(database, sweep, epochs)
    directory = SweepDir(folder, sweep, plan(sweep, base.seed), base.name, study, spec, epochs)
    studies.recover(study, sweep, alone=storage is None)
    directory.refresh()
    return directory


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
    target = directory.path / PLOT
    with atomic_path(target, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return target
