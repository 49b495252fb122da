"""Shared fixtures. Run folders live only in tmp_path; the repo's runs/ must stay untouched."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True, scope="session")
def _repo_runs_untouched() -> Iterator[None]:
    """No test may write into the repository's runs/ folder."""
    runs = REPO / "runs"
    before = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    yield
    after = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    assert after == before, f"tests wrote into {runs}: {sorted(set(after) - set(before))}"


def tiny_config(**sections: Any) -> dict[str, Any]:
    """A config that trains in well under a second; keyword sections replace or update."""
    config: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "data": {"source": "student", "n_train": 200, "n_test": 40, "labels": "rule"},
        "model": {
            "input_shape": [3],
            "layers": [
                {"type": "normalization"},
                {"type": "dense", "units": 4, "activation": "relu"},
                {"type": "dense", "units": 1, "activation": "sigmoid"},
            ],
        },
        "training": {"loss": "binary_crossentropy", "epochs": 1, "batch_size": 32},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def fake_mnist_cache(keras_home: Path) -> None:
    """A tiny mnist.npz in Keras' cache layout (64 training, 16 test images): no download."""
    import numpy as np

    rng = np.random.default_rng(0)
    cache = keras_home / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache / "mnist.npz",
        x_train=rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8),
        y_train=np.arange(64, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, size=(16, 28, 28), dtype=np.uint8),
        y_test=np.arange(16, dtype=np.uint8) % 10,
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(data_dict_or_text, name="exp.yaml") -> Path`` inside tmp_path."""

    def write(content: dict[str, Any] | str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the dltool app in-process (no TensorFlow start-up per call)."""
    from dltool.cli import app

    runner = CliRunner()

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return invoke
