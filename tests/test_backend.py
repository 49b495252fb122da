"""`training.backend`: which Keras backend a run asks for, and the refusals (backend.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config

Cli = Callable[..., Any]


def test_backend_choice(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path) -> None:
    import importlib.util

    path = write_config(tiny_config(training={"backend": "jax"}))
    result = run_cli("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    if importlib.util.find_spec("jax") is None:
        assert result.stderr == (
            f"error: {path}: training.backend: 'jax' is not installed (received 'jax'; "
            "expected tensorflow, or install it: pip install 'dltool[jax]')\n"
        )
    else:  # this test process already runs Keras on TensorFlow
        assert (
            "training.backend: Keras already runs on 'tensorflow' in this process" in result.stderr
        )
    assert not (tmp_path / "runs").exists()
    bad = run_cli("validate", write_config(tiny_config(training={"backend": "torch"}), "t.yaml"))
    assert (
        "training.backend: unknown value (received 'torch'; expected one of tensorflow, jax)"
        in bad.stderr
    )


@pytest.mark.slow
def test_keras_imports_quickly_and_leaves_its_import_time_objects_frozen() -> None:
    """In a fresh process: Keras imports without scikit-learn and matplotlib (2 s of its
    import, for features dltool never uses), both import as usual afterwards (plots, data
    splits), and a full collection walked TensorFlow's ~400,000 import-time objects (0.2 s)
    in every trial's clear_session; frozen, they are never walked again. While it imports, the
    collector is off (its collections were ~10 % of the import): one collection in all, and
    the collector on again afterwards."""
    probe = """
import gc, sys
from dltool.backend import HIDDEN_FROM_KERAS, import_keras
collections = []
gc.collect()  # nothing left for a collection that the few allocations before the import might set off
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
before = gc.get_freeze_count()
keras = import_keras()
print(before, gc.get_freeze_count())
print(collections, gc.isenabled())
print(sorted(name for name in HIDDEN_FROM_KERAS if name in sys.modules))
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split
print(plt.figure() is not None, len(train_test_split([1, 2, 3, 4], test_size=0.5)[1]))
print(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).predict(keras.ops.ones((1, 2)), verbose=0).shape)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    frozen, collector, hidden, after, predicted = done.stdout.splitlines()
    before, after_import = map(int, frozen.split())
    assert before == 0
    assert after_import > 100_000
    assert collector == "[2] True"  # import_keras' own full collection only; on again
    assert hidden == "[]"  # not imported with Keras
    assert after == "True 2"  # ... and usable afterwards
    assert predicted == "(1, 1)"


@pytest.mark.parametrize("enabled", [True, False])
def test_a_failed_import_leaves_the_collector_as_it_was(
    monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    """import_keras turns the collector off while Keras imports: when the import fails, it is
    on again if it was on, and stays off if the program had turned it off."""
    import gc

    from dltool.backend import import_keras

    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.raises(ImportError):
            import_keras()
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
