"""Every shipped example config trains (smoke-sized here; full runs are measured in the README)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CONFIGS, fake_mnist_cache
from dltool.rundir import RUN_FILES

EXAMPLES = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.slow
def test_example_trains_one_epoch(
    run_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    fake_mnist_cache(tmp_path / "keras")  # mnist_cnn reads Keras' cache: no download in tests
    config = yaml.safe_load(path.read_text())
    config["training"]["epochs"] = 1
    for key in ("path", "test_path"):  # relative data paths stay relative to configs/
        if isinstance(config["data"].get(key), str):
            config["data"][key] = str((CONFIGS / config["data"][key]).resolve())
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(config))
    result = run_cli("train", copy, "--smoke", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert [name for name in RUN_FILES if not (run / name).is_file()] == []
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_smoke_command_over_every_config(
    run_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented CI guard, on the real files: `dltool smoke configs/*.yaml`."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    fake_mnist_cache(tmp_path / "keras")
    result = run_cli("smoke", *EXAMPLES)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\tok\t") == len(EXAMPLES)
