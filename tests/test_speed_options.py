"""Speed options (issue 7): profiling, jit_compile, steps_per_execution, and the benchmark suite."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import dltool
from conftest import CONFIGS, REPO, tiny_config
from dltool.backend import import_keras
from dltool.config import validate_config

import_keras()  # quietly, before dltool.model imports keras

from dltool.model import (  # noqa: E402
    AUTO_STEPS_PER_EXECUTION,
    AUTO_STEPS_THRESHOLD,
    steps_per_execution,
)

DLTOOL = Path(sys.executable).with_name("dltool")
PHASES = ("import", "data", "build", "fit", "evaluate", "save")


def _only_run(runs: Path) -> Path:
    (folder,) = runs.iterdir()
    return folder


def _seconds(run: Path) -> dict[str, Any]:
    seconds: dict[str, Any] = json.loads((run / "profile.json").read_text())["seconds"]
    return seconds


def test_profile_flag_writes_every_phase(write_config: Callable[..., Path], tmp_path: Path) -> None:
    # A real process: the import phase is TensorFlow's first import, which only a fresh
    # process has (in-process, another test may have imported it already).
    runs = tmp_path / "runs"
    done = subprocess.run(
        [str(DLTOOL), "train", str(write_config(tiny_config())), "--runs-dir", str(runs), "--profile"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = _only_run(runs)
    seconds = _seconds(run)
    assert set(PHASES) <= set(seconds)
    assert all(isinstance(seconds[k], float) and seconds[k] >= 0 for k in PHASES), seconds
    assert seconds["import"] > 0
    assert "profile (seconds): import" in done.stdout
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["training"]["profile"] is True
    info = json.loads((run / "run.json").read_text())
    assert info["timings"] == seconds  # run.json keeps the same figures


def test_training_profile_key_and_auto_steps(tmp_path: Path) -> None:
    # 256 rows in batches of 1: 256 batches an epoch, so auto (0) resolves to 32.
    config = tiny_config(
        data={"n_train": AUTO_STEPS_THRESHOLD},
        training={"batch_size": 1, "profile": True},
    )
    result = dltool.train(config, runs_dir=tmp_path / "runs", quiet=True)

    profile = json.loads((result.path / "profile.json").read_text())
    assert profile["steps_per_execution"] == AUTO_STEPS_PER_EXECUTION
    assert profile["epochs"] == 1
    seconds = profile["seconds"]
    assert set(PHASES) - {"import"} <= set(seconds)  # import: only when this process imported TF
    assert all(value >= 0 for value in seconds.values()), seconds


def test_no_profile_json_by_default(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    result = run_cli("train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = _only_run(tmp_path / "runs")
    assert not (run / "profile.json").exists()
    assert {"data", "build", "fit", "evaluate", "save"} <= set(
        json.loads((run / "run.json").read_text())["timings"]
    )


def test_jit_compile_and_steps_per_execution_train_and_are_recorded(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        training={"jit_compile": True, "steps_per_execution": 4, "profile": True, "epochs": 2}
    )
    result = run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs")

    assert result.exit_code == 0, result.output
    run = _only_run(tmp_path / "runs")
    training = yaml.safe_load((run / "config.yaml").read_text())["training"]
    assert training["jit_compile"] is True
    assert training["steps_per_execution"] == 4
    assert json.loads((run / "profile.json").read_text())["steps_per_execution"] == 4
    assert json.loads((run / "run.json").read_text())["epochs_completed"] == 2


def test_speed_option_defaults_are_recorded(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    result = run_cli("train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    training = yaml.safe_load((_only_run(tmp_path / "runs") / "config.yaml").read_text())[
        "training"
    ]
    assert training["steps_per_execution"] == 0  # auto
    assert training["jit_compile"] is False
    assert training["backend"] == "tensorflow"
    assert training["profile"] is False


@pytest.mark.parametrize(
    ("configured", "batches", "expected"),
    [
        (0, 1, 1),
        (0, AUTO_STEPS_THRESHOLD - 1, 1),
        (0, AUTO_STEPS_THRESHOLD, AUTO_STEPS_PER_EXECUTION),
        (0, 100_000, AUTO_STEPS_PER_EXECUTION),
        (1, 100_000, 1),
        (4, 1, 4),
        (64, 10_000, 64),
    ],
    ids=[
        "auto-1-batch",
        "auto-255-batches",
        "auto-256-batches",
        "auto-100k-batches",
        "explicit-1",
        "explicit-4-short-epoch",
        "explicit-64",
    ],
)
def test_steps_per_execution_resolution(configured: int, batches: int, expected: int) -> None:
    config = validate_config(
        tiny_config(training={"steps_per_execution": configured}), source="<test>"
    )
    assert steps_per_execution(config, batches) == expected


def test_auto_steps_constants() -> None:
    # The documented rule: 32 steps per call when an epoch has 256 or more batches.
    assert (AUTO_STEPS_THRESHOLD, AUTO_STEPS_PER_EXECUTION) == (256, 32)


# ------------------------------------------------------------------ benchmark suite


@pytest.fixture
def compare(monkeypatch: pytest.MonkeyPatch) -> Any:
    """benchmarks/compare.py as a module (it imports its sibling timing.py)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("compare")


def test_every_example_config_has_a_plain_script_or_a_reason(compare: Any) -> None:
    shipped = {path.stem for path in CONFIGS.glob("*.yaml")}
    assert shipped == set(compare.PAIRS) | set(compare.NOT_COMPARED)
    for name in compare.PAIRS:
        assert (REPO / "benchmarks" / "plain" / f"{name}.py").is_file(), name


@pytest.mark.parametrize("name", ["student_pass_rule", "breast_cancer", "digits_cnn"])
def test_fixed_epochs_agree_between_the_two_sides(compare: Any, name: str) -> None:
    overrides = dict(a.split("=", 1) for a in compare.PAIRS[name].overrides)
    assert overrides["training.early_stopping"] == "null"
    script = (REPO / "benchmarks" / "plain" / f"{name}.py").read_text()
    found = re.search(r"^EPOCHS = (\d+)", script, flags=re.MULTILINE)
    assert found, f"{name}.py has no EPOCHS constant"
    assert overrides["training.epochs"] == found.group(1)
    assert "EarlyStopping" not in script


def test_timing_measures_a_child_without_gnu_time(compare: Any, tmp_path: Path) -> None:
    timing = importlib.import_module("timing")
    measured = timing.run_timed(
        [sys.executable, "-c", "b = b'x' * (64 * 2**20); print('done')"], tmp_path
    )
    assert measured.stdout.strip() == "done"
    assert measured.wall > 0
    assert measured.peak_mib >= 64  # the child's own peak, not the parent's
