"""Faults, for real: signals to a running `dltool train`, resume, crashes, NaN, full disks."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, tiny_config

Cli = Callable[..., Any]
DLTOOL = Path(sys.executable).with_name("dltool")
# Deterministic (no dropout), a checkpoint after every epoch, slow enough to interrupt.
SLOW = tiny_config(
    data={"n_train": 3000, "n_test": 200, "validation_split": 0.2},
    training={"epochs": 12, "batch_size": 16, "checkpoint_seconds": 0},
)


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _start(config: Path, runs: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DLTOOL), "train", str(config), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _wait_for_epochs(process: subprocess.Popen[str], runs: Path, epochs: int) -> Path:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.communicate()}")
        for run in runs.glob("*"):
            latest = run / "checkpoint" / "latest.json"
            if latest.is_file() and json.loads(latest.read_text())["epoch"] >= epochs:
                return run
        time.sleep(0.05)
    process.kill()
    pytest.fail("no checkpoint in time")


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_signal_then_resume_matches_uninterrupted(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, sig: int, code: int, word: str) -> None:  # fmt: skip
    config = write_config(SLOW)
    process = _start(config, tmp_path / "runs")
    run = _wait_for_epochs(process, tmp_path / "runs", 2)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert info["error"].startswith(word)
    assert f"resume with: dltool train --resume {run}" in stderr
    stopped_after = json.loads((run / "checkpoint" / "latest.json").read_text())["epoch"]
    assert 2 <= stopped_after < 12
    assert not (run / "model.keras").exists()

    resumed = run_cli("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming {run} after epoch {stopped_after} of 12" in resumed.stdout
    history = _history(run)
    assert [row["epoch"] for row in history] == [str(e) for e in range(1, 13)]
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["resumed"][0]["from_epoch"]) == ("completed", stopped_after)

    straight = run_cli("train", config, "--runs-dir", tmp_path / "straight")
    assert straight.exit_code == 0, straight.stderr
    (reference,) = (tmp_path / "straight").iterdir()
    resumed_metrics = json.loads((run / "metrics.json").read_text())
    reference_metrics = json.loads((reference / "metrics.json").read_text())
    for split in ("train", "validation", "test"):
        for name, value in reference_metrics[split].items():
            assert resumed_metrics[split][name] == pytest.approx(value, abs=1e-4), (split, name)


def test_sigkill_leaves_complete_files_and_resumes(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    process = _start(write_config(SLOW), tmp_path / "runs")
    run = _wait_for_epochs(process, tmp_path / "runs", 1)
    time.sleep(0.3)  # somewhere in the middle of an epoch or a write
    process.kill()
    process.communicate(timeout=60)
    for path in run.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            _history(run)
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
    assert (
        not [p for p in run.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"] or True
    )  # temp files may remain, final ones are complete
    listed = json.loads(run_cli("runs", "--runs-dir", tmp_path / "runs", "--json").stdout)
    assert listed[0]["status"] == "crashed"
    edited = Path(shutil.copytree(run, tmp_path / "edited"))  # same run, config.yaml changed
    config = yaml.safe_load((edited / "config.yaml").read_text())
    config["model"]["layers"][1]["units"] = 99
    (edited / "config.yaml").write_text(yaml.safe_dump(config))
    changed = run_cli("train", "--resume", edited)
    assert changed.exit_code == 2
    assert "config.yaml's model, data or optimizer changed since the checkpoint" in changed.stderr
    resumed = run_cli("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert len(_history(run)) == 12


def test_resume_refusals(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path) -> None:
    missing = run_cli("train", "--resume", tmp_path / "nope")
    assert (missing.exit_code, missing.stderr) == (
        2,
        f"error: {tmp_path / 'nope'}: not a dltool run folder (no run.json)\n",
    )
    done = run_cli(
        "train",
        write_config(tiny_config(training={"checkpoint_seconds": 0})),
        "--runs-dir",
        tmp_path / "runs",
    )
    assert done.exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    completed = run_cli("train", "--resume", run)
    assert (completed.exit_code, completed.stderr) == (
        2,
        f"error: {run}: the run is already completed; nothing to resume\n",
    )
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(
        json.dumps(
            {**info, "status": "running", "pid": os.getpid(), "host": __import__("platform").node()}
        )
    )
    running = run_cli("train", "--resume", run)
    assert (
        running.stderr
        == f"error: {run}: the run is still running (pid {os.getpid()}); stop it first\n"
    )
    assert not (run / "checkpoint").exists()  # a completed run keeps no checkpoint
    (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    no_checkpoint = run_cli("train", "--resume", run)
    assert (
        no_checkpoint.stderr
        == f"error: {run}: no checkpoint to resume from (it stopped before its first one); train it again\n"
    )
    both = run_cli("train", write_config(tiny_config()), "--resume", run)
    assert (
        both.stderr == "error: --resume continues a run folder: give no experiment files with it\n"
    )


def test_nan_keeps_the_last_finite_checkpoint(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        model={"input_shape": [3], "layers": [{"type": "normalization"}, {"type": "dense", "units": 8}, {"type": "dense", "units": 1}]},
        training={"loss": "mean_squared_error", "metrics": [], "epochs": 30, "checkpoint_seconds": 0, "optimizer": {"name": "sgd", "learning_rate": 0.5}},
    )  # fmt: skip
    result = run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.stdout
    assert pytest.importorskip("re").search(
        r"error: training: the loss became (nan|inf) in epoch \d+, batch \d+", result.stderr
    )
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed"
    assert not (run / "model.keras").exists()  # never a final model from NaN weights
    latest = run / "checkpoint" / "latest.json"
    if latest.is_file():  # a finite epoch finished before the loss blew up
        from dltool.backend import import_keras

        keras = import_keras()
        saved = json.loads(latest.read_text())
        model = keras.saving.load_model(run / "checkpoint" / saved["file"], safe_mode=True)
        import numpy as np

        assert all(np.isfinite(w).all() for w in model.get_weights())


def test_failed_save_exits_4_and_keeps_the_checkpoint(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from dltool.backend import import_keras

    keras = import_keras()
    real_save = keras.Model.save

    def disk_fills_up(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name.startswith(".model.keras."):  # the final model's temporary file
            Path(path).write_bytes(b"half a model")
            raise OSError(28, "No space left on device")
        real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", disk_fills_up)
    config = write_config(tiny_config(training={"epochs": 2, "checkpoint_seconds": 0}))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 4, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert result.stderr == f"error: {run / 'model.keras'}: cannot write: No space left on device\n"
    assert not (run / "model.keras").exists()
    assert not list(run.glob(".model.keras*"))  # the half-written temporary file is gone
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    saved = json.loads((run / "checkpoint" / "latest.json").read_text())
    assert saved["epoch"] == 2
    keras.saving.load_model(run / "checkpoint" / saved["file"], safe_mode=True)  # still loadable


def _create(runs: str, barrier: Any, results: Any) -> None:
    from dltool.rundir import RunDir

    barrier.wait()
    run = RunDir.create(Path(runs), "same", when=datetime(2026, 1, 1, 12, 0, 0))
    (run.path / "owner.txt").write_text(str(os.getpid()))
    results.put((str(run.path), os.getpid()))


def test_eight_processes_same_name_same_second(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(8), context.Queue()
    workers = [
        context.Process(target=_create, args=(str(tmp_path), barrier, results)) for _ in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    made = [results.get(timeout=5) for _ in range(8)]
    assert len({path for path, _ in made}) == 8
    for path, pid in made:
        assert (Path(path) / "owner.txt").read_text() == str(pid)  # nothing mixed


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("a/../b", r"--name: name: not allowed", id="dotdot-slash"),
        pytest.param("a\\b", r"--name: name: not allowed", id="backslash"),
        pytest.param("a\x00b", r"--name: name: not allowed", id="nul"),
        pytest.param(".hidden", r"--name: name: not allowed", id="leading-dot"),
        pytest.param("..", r"--name: name: not allowed", id="dotdot"),
    ],
)
def test_hostile_names(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, name: str, message: str
) -> None:
    result = run_cli(
        "train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs", "--name", name
    )
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert pytest.importorskip("re").search(message, result.stderr)
    assert not (tmp_path / "runs").exists()


def test_runs_symlink_is_refused(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "runs").symlink_to(elsewhere)
    result = run_cli("train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {tmp_path / 'runs'}: is a symbolic link (to {elsewhere}); refusing to write through it"
    )
    assert list(elsewhere.iterdir()) == []


def test_model_naming_a_module_outside_keras_is_refused(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    import zipfile

    done = run_cli("train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs")
    assert done.exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    original = run / "model.keras"
    planted = tmp_path / "planted.keras"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(planted, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = data.replace(b'"module": "keras.layers"', b'"module": "os"', 1)
            target.writestr(item, data)
    original.write_bytes(planted.read_bytes())
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((1, 3)))
    result = run_cli("predict", run, "--input", tmp_path / "x.npy", "--output", tmp_path / "o.csv")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {original}: ")
    assert not (tmp_path / "o.csv").exists()


def test_safe_mode_is_never_turned_off() -> None:
    offenders = []
    for path in (REPO / "src").rglob("*.py"):
        text = path.read_text()
        for needle in (
            "safe_mode=False",
            "enable_unsafe_deserialization",
            "allow_pickle=True",
            "yaml.load(",
            "unsafe_load",
        ):
            if needle in text:
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert offenders == []


def test_interrupt_during_a_checkpoint_write_keeps_the_previous_one(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A second Ctrl-C that lands while a checkpoint is being written (simulated at that moment)."""
    from dltool.backend import import_keras

    keras = import_keras()
    real_save = keras.Model.save

    def interrupted_save(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name.startswith(".epoch-0003.keras."):
            Path(path).write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt
        real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    config = write_config(tiny_config(training={"epochs": 5, "checkpoint_seconds": 0}))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 130
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    latest = json.loads((run / "checkpoint" / "latest.json").read_text())
    assert (latest["epoch"], latest["file"]) == (2, "epoch-0002.keras")
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
        "epoch-0002.keras",
        "latest.json",
    ]
    keras.saving.load_model(run / "checkpoint" / latest["file"], safe_mode=True)
    monkeypatch.setattr(keras.Model, "save", real_save)
    resumed = run_cli("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert len(_history(run)) == 5
