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
def test_the_objects_keras_leaves_at_import_are_frozen_from_garbage_collection() -> None:
    """A full collection walked TensorFlow's ~400,000 import-time objects (0.2 s) in every
    trial's clear_session; frozen, they are never walked again."""
    probe = (
        "import gc; from dltool.backend import import_keras; before = gc.get_freeze_count(); "
        "import_keras(); print(before, gc.get_freeze_count())"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    before, after = map(int, done.stdout.split())
    assert before == 0
    assert after > 100_000
