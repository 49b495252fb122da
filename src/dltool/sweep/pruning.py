"""Pruning: the Optuna pruner a sweep's ``prune`` section describes, and :class:`Watch`, what
a trial's training calls after each epoch to report the sweep's metric and ask whether to stop.

A worker process opens the study itself (a journal file or the database): the trial's
intermediate values are in the study, where the pruner compares them with other trials'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from dltool.sweep.spec import SweepConfig


def pruner(prune: dict[str, Any] | None, epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner a sweep's ``prune`` section describes (``epochs``: the base's)."""
    if prune is None:
        return optuna.pruners.NopPruner()
    kind, minimum = prune["type"], prune["min_epochs"]
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=prune["startup_trials"], n_warmup_steps=minimum
        )
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=minimum, reduction_factor=prune["reduction_factor"]
        )
    return optuna.pruners.HyperbandPruner(
        min_resource=minimum,
        max_resource=max(epochs, minimum),
        reduction_factor=prune["reduction_factor"],
    )


def prune_spec(sweep: SweepConfig) -> dict[str, Any] | None:
    return sweep.prune.model_dump(mode="json") if sweep.prune is not None else None


@dataclass(frozen=True)
class Watch:
    """What a trial's training reports after each epoch, for pruning (picklable: it travels
    to a worker process, which opens the storage itself)."""

    storage: str
    study_name: str
    trial_id: int
    key: str  # Keras' epoch-log key of the sweep's metric, e.g. val_loss
    prune: dict[str, Any]
    epochs: int

    def __call__(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record epoch ``epoch``'s value (from 1); True when the trial should stop (pruned)."""
        value = logs.get(self.key)
        if value is None or not math.isfinite(value):
            return False
        from dltool.sweep.study import storage_of  # study.py builds its pruner from here

        study = _watched(self)
        storage = storage_of(study)
        storage.set_trial_intermediate_value(self.trial_id, epoch, float(value))
        if epoch < self.prune["min_epochs"] or epoch >= self.epochs:
            return False  # too early to judge, or already the last epoch
        return bool(study.pruner.prune(study, storage.get_trial(self.trial_id)))


_WATCHED: dict[tuple[str, str], optuna.Study] = {}


def _watched(watch: Watch) -> optuna.Study:
    from dltool.sweep.study import open_storage

    key = (watch.storage, watch.study_name)
    if key not in _WATCHED:
        _WATCHED[key] = optuna.load_study(
            study_name=watch.study_name,
            storage=open_storage(watch.storage),
            sampler=optuna.samplers.RandomSampler(seed=0),  # never samples here
            pruner=pruner(watch.prune, watch.epochs),
        )
    return _WATCHED[key]
