"""The benchmark suite in benchmarks/: its pairs of dltool and plain-Keras scripts, and its timer."""

from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIGS, REPO


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


@pytest.mark.slow
def test_timing_measures_a_child_without_gnu_time(compare: Any, tmp_path: Path) -> None:
    timing = importlib.import_module("timing")
    measured = timing.run_timed(
        [sys.executable, "-c", "b = b'x' * (64 * 2**20); print('done')"], tmp_path
    )
    assert measured.stdout.strip() == "done"
    assert measured.wall > 0
    assert measured.peak_mib >= 64  # the child's own peak, not the parent's


def test_the_sweep_benchmark_counts_best_so_far_over_completed_trials_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sweeps = importlib.import_module("sweeps")
    trials = [
        {"status": "completed", "value": 0.5},
        {"status": "pruned", "value": 0.1},  # never the best
        {"status": "failed", "value": None},
        {"status": "completed", "value": 0.3},
    ]
    assert [sweeps.best_after(trials, n) for n in (1, 2, 3, 4)] == [0.5, 0.5, 0.5, 0.3]
    assert sweeps.trials_to_reach(trials, 0.4) == 4
    assert sweeps.trials_to_reach(trials, 0.2) is None


def test_the_sweep_benchmark_steady_rate_starts_once_every_worker_has_finished_a_trial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sweeps = importlib.import_module("sweeps")
    # 1 worker: 3 trials after its first, in 6 s
    assert sweeps.steady_rate([10.0, 12.0, 14.0, 16.0], 1) == 3600 * 3 / 6
    # 2 workers: from the second completion (both running) on, 3 trials in 9 s
    assert sweeps.steady_rate([10.0, 11.0, 15.0, 16.0, 20.0], 2) == 3600 * 3 / 9
    assert math.isnan(sweeps.steady_rate([10.0, 11.0], 2))  # no trial after both workers' first


@pytest.fixture
def cnn_speed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """benchmarks/cnn_speed.py as a module (it imports its sibling timing.py)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("cnn_speed")


def test_the_cnn_benchmark_counts_the_mnist_convnets_flops_by_hand(cnn_speed: Any) -> None:
    import yaml

    model = yaml.safe_load((CONFIGS / "mnist_cnn.yaml").read_text())["model"]
    macs = cnn_speed.forward_macs(model["input_shape"], model["layers"])
    # conv 3x3x1 -> 26x26x32; pool -> 13x13x32; conv 3x3x32 -> 11x11x64; pool -> 5x5x64; dense 1600 -> 10
    assert [m for _, m in macs] == [26 * 26 * 32 * 9, 11 * 11 * 64 * 9 * 32, 1600 * 10]
    assert [m for _, m in macs] == [194_688, 2_230_272, 16_000]
    flops = cnn_speed.training_flops(model["input_shape"], model["layers"])
    assert flops["forward"] == 2 * 2_440_960 == 4_881_920
    # 3x forward, less the first conv's input gradient (2 x 194,688 FLOPs)
    assert flops["training"] == 3 * 4_881_920 - 2 * 194_688 == 14_256_384
    assert flops["rule_of_3x"] == 14_645_760


def test_the_cnn_benchmark_counts_same_padding_and_strides(cnn_speed: Any) -> None:
    layers = [
        {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "strides": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 4},
    ]
    # 28x28 -> 14x14x8 (ceil(28 / 2)); dense 1568 -> 4
    assert cnn_speed.forward_macs([28, 28, 1], layers) == [
        ("0:conv2d", 14 * 14 * 8 * 9),
        ("2:dense", 1568 * 4),
    ]
    with pytest.raises(ValueError, match="'lstm' is not counted"):
        cnn_speed.forward_macs([28, 28, 1], [{"type": "lstm"}])


def test_the_cnn_benchmark_leaves_the_tracing_epoch_out(cnn_speed: Any) -> None:
    assert cnn_speed.steady_samples_per_second([30.0, 2.0, 3.0], 100) == 100 * 2 / 5
    with pytest.raises(ValueError, match="at least 2 epochs"):
        cnn_speed.steady_samples_per_second([30.0], 100)


def test_the_cnn_benchmarks_synthetic_labels_follow_the_image(cnn_speed: Any) -> None:
    import numpy as np

    images = np.zeros((10, 28, 28), dtype=np.uint8)
    bands = np.array_split(np.arange(28), 10)
    for label, rows in enumerate(bands):
        images[label, rows, :] = 255  # band `label` is the brightest
    assert cnn_speed.band_labels(images).tolist() == list(range(10))


def test_the_cnn_benchmarks_verdicts_say_by_how_much(cnn_speed: Any) -> None:
    assert cnn_speed.verdict(1.62, 1.5, "x").startswith("PASS: x (target 1.5; +8% over)")
    assert cnn_speed.verdict(0.3, 0.5, "y") == "MISS: y (target 0.5; 40% short, needs 1.67x)"
