"""The Python API: what ``dltool train`` does, for notebooks and scripts.

import dltool
run = dltool.train("configs/student_pass_rule.yaml", overrides=["training.epochs=5"])
run.metrics["test"]["accuracy"], run.path
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dltool import views
from dltool.config import ExperimentConfig, load_config, validate_config, with_name
from dltool.overrides import apply_assignment

if TYPE_CHECKING:
    from dltool.training import RunResult


def load(config: str | Path | dict[str, Any] | ExperimentConfig, overrides: list[str] | None = None) -> tuple[ExperimentConfig, str]:  # fmt: skip
    """A validated config and its source name, from a path, a mapping or a config."""
    if isinstance(config, ExperimentConfig):
        if not overrides:
            return config, "<config>"
        config = config.model_dump(mode="json")
    if isinstance(config, dict):
        raw = copy.deepcopy(config)  # overrides must not change the caller's mapping
        origins = {apply_assignment(raw, text): text for text in overrides or []}
        return validate_config(raw, source="<dict>", origins=origins), "<dict>"
    return load_config(config, overrides), str(config)


def train(
    config: str | Path | dict[str, Any] | ExperimentConfig,
    overrides: list[str] | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    quiet: bool = False,
    smoke: bool = False,
    console: Console | None = None,
    prune: Callable[[int, dict[str, float]], bool] | None = None,
) -> RunResult:
    """Train one experiment; returns a ``RunResult`` with ``.path``, ``.metrics``, ``.params``.

    Args:
        config: an experiment file's path, a mapping like its contents, or a config.
        overrides: ``"key=value"`` strings, exactly like ``--set``.
        runs_dir: parent folder of run folders.
        name: run name (default: the config's).
        quiet: no progress output.
        smoke: 1 epoch on a small slice of the data (a quick check).
        console: where progress goes (default: the terminal; ``quiet`` silences it).
        prune: called after each epoch with its number (from 1) and Keras' logs; True
            stops the run there with status ``pruned`` (what a sweep's pruning uses).

    Raises:
        dltool.errors.DltoolError: the same errors the command line reports.
    """
    loaded, source = load(config, overrides)
    if name is not None:
        loaded = with_name(loaded, name)
    from dltool import ahead
    from dltool.backend import use_backend

    ahead.start_for(loaded.data, loaded.task)  # the data files read while TensorFlow loads
    try:
        use_backend(loaded.training.backend, source)
        from dltool.training import run_training

        return run_training(
            loaded,
            source=source,
            runs_dir=Path(runs_dir),
            console=console or views.console(quiet=quiet),
            overrides=overrides,
            smoke=smoke,
            prune=prune,
        )
    finally:
        ahead.discard()
