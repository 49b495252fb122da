"""`dltool smoke` and `dltool train --smoke`: one short epoch on capped data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config

Cli = Callable[..., Any]


@pytest.mark.slow
def test_smoke_runs(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(tiny_config(data={"n_train": 1000, "n_test": 600}, training={"epochs": 50}))
    result = run_cli("train", path, "--smoke", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert (info["smoke"], info["epochs_completed"]) == (True, 1)
    assert len((run / "predictions.csv").read_text().splitlines()) == 256 + 1  # rows capped
    failing = write_config(tiny_config(model={"input_shape": [3], "layers": [{"type": "dense", "units": 8}, {"type": "dense", "units": 1}]}, training={"loss": "mean_squared_error", "metrics": [], "optimizer": {"name": "sgd", "learning_rate": 10.0}}), "nan.yaml")  # fmt: skip
    result = run_cli("smoke", path, failing)
    assert result.exit_code == 3  # the NaN run fails; the good one still ran
    assert "the loss became" in result.stderr
    assert "smoke runs" in result.stdout
