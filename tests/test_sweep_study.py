"""Sweeps through their Optuna study, in this process: the shipped sweeps' plans pinned, the
order trials are taken, tpe's seeded proposals, pruning, and resume from the journal.

Training is replaced by a function of the trial's values (``fake_train``), so these tests
exercise the real study, journal file, pruner and tables without TensorFlow.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from conftest import CONFIGS, tiny_config
from dltool import sweep as sweeps
from dltool.config import load_config
from dltool.errors import TrainingError
from dltool.sweep import load_sweep, plan
from dltool.sweep import study as studies

Cli = Callable[..., Any]

# The plans of the shipped sweep files before sweeps went through Optuna: every trial's
# values and seed, in order (sha256 of their JSON). A change here changes users' sweeps.
PINNED = {
    "learning_rate": (12, "9dc5543d1189de82"),
    "regularization": (9, "519c070560494b95"),
}


def _digest(trials: list[Any]) -> str:
    text = json.dumps([[t.number, t.values, t.seed] for t in trials], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_sweeps_plan_the_same_trials_as_before(name: str) -> None:
    sweep = load_sweep(CONFIGS / "sweeps" / f"{name}.yaml")
    trials = plan(sweep, load_config(Path(sweep.base), sweep.overrides).seed)
    assert (len(trials), _digest(trials)) == PINNED[name]


def test_the_learning_rate_sweeps_first_trials_are_pinned() -> None:
    sweep = load_sweep(CONFIGS / "sweeps" / "learning_rate.yaml")
    first, second, third = plan(sweep, 7)[:3]
    assert first.values == second.values
    assert (first.seed, second.seed) == (7, 8)
    assert first.values["model.layers[1].units"] in (8, 16, 32)
    assert third.values != first.values


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _value(assignments: list[str], key: str) -> Any:
    for text in assignments:
        if text.startswith(f"{key}="):
            return json.loads(text.split("=", 1)[1])  # the sweep writes values as JSON
    return None


_FOLDERS = itertools.count(2)  # run-folder suffixes, unique in the test session


class FakeTraining:
    """Stands in for dltool.api.train: a run folder, and a loss that a formula gives.

    ``loss(values)`` is the final validation loss; epoch ``e`` of ``epochs`` reports
    ``loss * (1 + (epochs - e) / epochs)``, so a hopeless trial looks hopeless early.
    """

    def __init__(self, keys: list[str], loss: Callable[[dict[str, Any]], float], epochs: int = 4) -> None:  # fmt: skip
        self.keys, self.loss, self.epochs = keys, loss, epochs
        self.trained: list[tuple[dict[str, Any], int]] = []  # (values, seed) in training order
        self.fail: set[int] = set()  # seeds whose training fails

    def __call__(self, base: Any, overrides: list[str], runs_dir: str, name: str, prune: Any = None, **kwargs: Any) -> Any:  # fmt: skip
        values = {key: _value(overrides, key) for key in self.keys}
        seed = int(_value(overrides, "seed"))
        self.trained.append((values, seed))
        folder = Path(runs_dir) / f"{name}-20260101-000000-{next(_FOLDERS)}"
        folder.mkdir(parents=True)
        if seed in self.fail:
            raise TrainingError("training: the loss became nan")
        final = self.loss(values)
        status = "completed"
        for epoch in range(1, self.epochs + 1):
            reported = final * (1 + (self.epochs - epoch) / self.epochs)
            if prune is not None and prune(epoch, {"loss": reported, "val_loss": reported}):
                final, status = reported, "pruned"
                break
        metrics = {"train": {"loss": final}, "validation": {"loss": final}}
        return SimpleNamespace(path=folder, metrics=metrics, status=status)


def _sweep_file(tmp_path: Path, sweep: dict[str, Any], **config: Any) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_config(**config)))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", **sweep}))
    return path


def _folder(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "runs").iterdir()
    return folder


RATE = "training.optimizer.learning_rate"
UNITS = "model.layers[1].units"
TRAINING = {"optimizer": {"name": "adam", "learning_rate": 0.01}, "epochs": 4}


def test_the_study_trains_a_random_search_in_plan_order_with_its_seeds(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the study and its journal, trials run in the planned order with the planned seeds."""
    search = {"trials": 4, "seed": 2, "params": {RATE: {"log_uniform": [1.0e-4, 1.0e-1]}, UNITS: {"choice": [2, 4, 8]}}}  # fmt: skip
    path = _sweep_file(tmp_path, {"random": search, "repeats": 2}, training=TRAINING)
    fake = FakeTraining([RATE, UNITS], lambda v: v[RATE])
    monkeypatch.setattr("dltool.api.train", fake)
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr + result.stdout
    planned = plan(load_sweep(path), base_seed=3)
    assert fake.trained == [(t.values, t.seed) for t in planned]
    folder = _folder(tmp_path)
    assert (folder / "study.journal").is_file()
    rows = _rows(folder / "trials.csv")
    assert [(int(r["trial"]), int(r["seed"])) for r in rows] == [
        (t.number, t.seed) for t in planned
    ]
    best = json.loads((folder / "best.json").read_text())
    assert best["value"] == min(t.values[RATE] for t in planned)


def _tpe_sweep(tmp_path: Path, trials: int = 12, **extra: Any) -> Path:
    search = {"trials": trials, "seed": 5, "startup_trials": 4, "params": {RATE: {"log_uniform": [1.0e-4, 1.0]}, UNITS: {"int_uniform": [1, 64]}}}  # fmt: skip
    return _sweep_file(tmp_path, {"tpe": search, **extra}, training=TRAINING, data={"validation_split": 0.25})  # fmt: skip


def _bowl(values: dict[str, Any]) -> float:
    """A loss with its optimum at learning rate 0.01 and 32 units."""
    return (math.log10(values[RATE]) + 2) ** 2 + ((values[UNITS] - 32) / 32) ** 2


def test_a_seeded_tpe_search_with_one_worker_proposes_the_same_points(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proposed = []
    for attempt in ("a", "b"):
        fake = FakeTraining([RATE, UNITS], _bowl)
        monkeypatch.setattr("dltool.api.train", fake)
        folder = tmp_path / attempt
        folder.mkdir()
        result = run_cli("sweep", _tpe_sweep(folder), "--runs-dir", folder / "runs")
        assert result.exit_code == 0, result.stderr + result.stdout
        proposed.append(fake.trained)
        rows = _rows(_folder(folder) / "trials.csv")
        assert [r[RATE] for r in rows] == [str(values[RATE]) for values, _ in fake.trained]
    assert proposed[0] == proposed[1]
    assert len({json.dumps(v) for v, _ in proposed[0]}) == 12  # 12 different points
    # TPE learns: its last 8 proposals (after 4 random ones) beat the random ones on average
    losses = [_bowl(v) for v, _ in proposed[0]]
    assert sum(losses[4:]) / 8 < sum(losses[:4]) / 4


def test_pruned_trials_are_recorded_and_never_best(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = {RATE: [0.01, 0.001, 0.1, 0.0001]}
    prune = {"type": "median", "min_epochs": 2, "startup_trials": 1}
    path = _sweep_file(tmp_path, {"grid": grid, "prune": prune}, training=TRAINING, data={"validation_split": 0.25})  # fmt: skip
    fake = FakeTraining([RATE], _bowl_rate)
    monkeypatch.setattr("dltool.api.train", fake)
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr + result.stdout
    rows = _rows(_folder(tmp_path) / "trials.csv")
    status = {float(r[RATE]): r["status"] for r in rows}
    assert status == {0.01: "completed", 0.001: "pruned", 0.1: "pruned", 0.0001: "pruned"}
    best = json.loads((_folder(tmp_path) / "best.json").read_text())
    assert best["values"] == {RATE: 0.01}
    assert "pruned" in result.stdout
    # A pruned trial stops at the first epoch it may be judged, and says so in its value
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert all(float(r["validation.loss"]) > _bowl_rate({RATE: float(r[RATE])}) for r in pruned)


def _bowl_rate(values: dict[str, Any]) -> float:
    return (math.log10(values[RATE]) + 2) ** 2 + 0.1


def test_resume_keeps_completed_trials_and_retries_failed_and_lost_ones(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _sweep_file(tmp_path, {"grid": {RATE: [0.1, 0.01, 0.001]}, "repeats": 2}, training=TRAINING)  # fmt: skip
    # A process that took trial 1 from the journal and was killed (SIGKILL: no outcome).
    with sweeps.open_sweep(path, tmp_path / "runs", resume=False) as directory:
        lost = directory.claim()
    assert lost is not None
    assert lost.trial.number == 1
    folder = _folder(tmp_path)
    fake = FakeTraining([RATE], _bowl_rate)
    fake.fail = {4}  # the second seed of every point fails
    monkeypatch.setattr("dltool.api.train", fake)
    result = run_cli("sweep", folder, "--resume")
    assert result.exit_code == 3, result.stderr + result.stdout
    assert "0 already finished" in result.stdout
    assert sorted(seed for _, seed in fake.trained) == [3, 3, 3, 4, 4, 4]  # trial 1 too
    assert [r["status"] for r in _rows(folder / "trials.csv")] == ["completed", "failed"] * 3
    fake.fail, fake.trained = set(), []
    resumed = run_cli("sweep", folder, "--resume")
    assert resumed.exit_code == 0, resumed.stderr + resumed.stdout
    assert "3 already finished" in resumed.stdout  # trials 1, 3 and 5 are kept
    assert [seed for _, seed in fake.trained] == [4, 4, 4]  # the failed trials 2, 4 and 6
    assert [r["status"] for r in _rows(folder / "trials.csv")] == ["completed"] * 6


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--join", "s"], r"--join needs --storage postgresql://", id="join-without-storage"
        ),
        pytest.param(
            ["--status", "s", "--storage", "x.journal"],
            r"--storage: expected postgresql://USER@HOST:PORT/DATABASE \(received 'x\.journal'\)",
            id="not-a-database",
        ),
        pytest.param(
            ["SWEEP", "--join", "s", "--storage", "postgresql://u@127.0.0.1:1/d"],
            r"give one of SWEEP\.yaml, SWEEP_FOLDER --resume, --join STUDY and --status STUDY",
            id="file-and-join",
        ),
        pytest.param(
            ["SWEEP", "--storage", "postgresql://u:pw@127.0.0.1:1/d"],
            r"postgresql://u:\*\*\*@127\.0\.0\.1:1/d: cannot use the database: .*Connection refused",
            id="unreachable",
        ),
        pytest.param(
            ["--join", "s", "--storage", "postgresql://u@127.0.0.1:1/d"],
            r"cannot use the database: .*Connection refused",
            id="join-unreachable",
        ),
        pytest.param([], r"give a sweep file", id="nothing"),
    ],
)
def test_refused_sweep_command_lines(
    run_cli: Cli, tmp_path: Path, arguments: list[str], message: str
) -> None:
    import re

    path = _sweep_file(tmp_path, {"grid": {RATE: [0.1]}}, training=TRAINING)
    arguments = [str(path) if a == "SWEEP" else a for a in arguments]
    result = run_cli("sweep", *arguments, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr + result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert re.search(message, line), line
    assert "pw" not in line.split("***")[0]  # never the password
    assert not (tmp_path / "runs").exists()


def test_pruning_a_validation_metric_needs_validation_data(run_cli: Cli, tmp_path: Path) -> None:
    path = _sweep_file(tmp_path, {"grid": {RATE: [0.1]}, "prune": {"type": "hyperband"}}, training=TRAINING)  # fmt: skip
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "prune: needs validation data to judge validation.loss after each epoch" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["median", "successive_halving", "hyperband"])
def test_every_pruner_stops_hopeless_trials(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    grid = {RATE: [0.01, 0.011, 0.009, 0.5, 0.0002, 0.3, 0.0001, 0.9, 0.00005]}
    prune = {"type": kind, "min_epochs": 1}
    path = _sweep_file(tmp_path, {"grid": grid, "prune": prune}, training={**TRAINING, "epochs": 9}, data={"validation_split": 0.25})  # fmt: skip
    fake = FakeTraining([RATE], _bowl_rate, epochs=9)
    monkeypatch.setattr("dltool.api.train", fake)
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr + result.stdout
    rows = _rows(_folder(tmp_path) / "trials.csv")
    assert rows[0]["status"] == "completed"
    assert {r["status"] for r in rows[3:]} >= {"pruned"}
    best = json.loads((_folder(tmp_path) / "best.json").read_text())
    assert best["values"][RATE] in (0.01, 0.011, 0.009)


def test_parallel_workers_share_the_cores_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dltool.sweep import executor

    monkeypatch.setattr("dltool.backend.usable_cores", lambda: 8)
    assert [executor.worker_threads(jobs) for jobs in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stays
    executor.share_cores(4)
    assert (os.environ["TF_NUM_INTRAOP_THREADS"], os.environ["OMP_NUM_THREADS"]) == ("4", "3")


def test_resume_queues_the_trials_a_killed_first_run_never_queued(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run killed while it queued the plan: --resume queues and trains the rest."""
    path = _sweep_file(tmp_path, {"grid": {RATE: [0.1, 0.01, 0.001]}}, training=TRAINING)
    create = studies.create
    monkeypatch.setattr(studies, "create", lambda storage, sweep, trials, *rest: create(storage, sweep, trials[:1], *rest))  # fmt: skip
    with sweeps.open_sweep(path, tmp_path / "runs", resume=False) as directory:
        folder = directory.path
    monkeypatch.setattr(studies, "create", create)
    fake = FakeTraining([RATE], _bowl_rate)
    monkeypatch.setattr("dltool.api.train", fake)
    result = run_cli("sweep", folder, "--resume")
    assert result.exit_code == 0, result.stderr + result.stdout
    assert [values[RATE] for values, _ in fake.trained] == [0.1, 0.01, 0.001]
    assert [r["status"] for r in _rows(folder / "trials.csv")] == ["completed"] * 3
