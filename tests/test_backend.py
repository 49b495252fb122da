"""`training.backend`: which Keras backend a run asks for, and the refusals (backend.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
