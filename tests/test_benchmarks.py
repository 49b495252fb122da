"""The benchmark suite in benchmarks/: its pairs of dltool and plain-Keras scripts, and its timer."""

from __future__ import annotations

import importlib
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
    assert sweeps.steady_rate([10.0, 11.0], 2) != sweeps.steady_rate([10.0, 11.0], 2)  # NaN
