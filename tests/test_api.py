"""The Python API: `dltool.train(config, overrides=..., runs_dir=...)`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import dltool
from conftest import tiny_config
from dltool.errors import ConfigError


@pytest.mark.slow
def test_python_api(tmp_path: Path) -> None:
    config = tiny_config()
    before = copy.deepcopy(config)
    run = dltool.train(
        config,
        overrides=["training.epochs=2", "model.layers[1].units=3"],
        runs_dir=tmp_path / "runs",
        quiet=True,
    )
    assert config == before  # overrides change the run, never the caller's mapping
    resolved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert resolved["model"]["layers"][1]["units"] == 3
    assert run.path.parent == tmp_path / "runs"
    assert run.epochs_run == 2
    assert 0.0 <= run.metrics["test"]["accuracy"] <= 1.0
    with pytest.raises(
        ConfigError, match=r"--set training.epochs=-1: training.epochs: out of range"
    ):
        dltool.train(
            tiny_config(), overrides=["training.epochs=-1"], runs_dir=tmp_path / "runs", quiet=True
        )
