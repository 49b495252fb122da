"""Opening a sweep: a new sweep folder and its study, a joining worker's folder, the folder
``--status`` writes, and an earlier folder for ``--resume``. Everything that can refuse
(the sweep file, its base, the trial keys, the database, the study) is checked before a
folder is made or the study is changed.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltool.errors import ConfigError, InputError, UsageError
from dltool.rundir import RunDir, write_yaml
from dltool.sweep import study as studies
from dltool.sweep.folder import JOURNAL, SWEEP_FILE, SweepDir, require_sweep_folder
from dltool.sweep.spec import SweepConfig, Trial, load_sweep, plan

if TYPE_CHECKING:
    from dltool.config import ExperimentConfig


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
    _write_sweep_file(folder, sweep, f"study {name} in {where}", storage)  # for report.html
    directory = SweepDir(folder, sweep, trials, attrs[studies.PREFIX], study, storage, epochs)
    directory.write()
    return directory


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
    trials = plan(sweep, base.seed)
    if studies.find(database, sweep.name):
        study = studies.load(database, sweep, epochs)
    else:  # the first run was killed before it had made its study in the journal
        study = studies.create(database, sweep, [], study_attributes(sweep, base), epochs)
    directory = SweepDir(folder, sweep, trials, base.name, study, spec, epochs)
    studies.recover(study, trials, alone=storage is None)
    directory.refresh()
    return directory
