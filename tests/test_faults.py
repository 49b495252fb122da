"""Faults, for real: signals to a running `dltool train`, resume, crashes, NaN, full disks."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import resource
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
from dltool.rundir import RunDir

Cli = Callable[..., Any]
DLTOOL = Path(sys.executable).with_name("dltool")
# Deterministic (no dropout), a checkpoint after every epoch, slow enough to interrupt: the
# tests signal after epoch 1 or 2 and the run must still be going (an epoch takes ~0.3 s).
SLOW_EPOCHS = 8
SLOW = tiny_config(
    data={"n_train": 3000, "n_test": 200, "validation_split": 0.2},
    training={"epochs": SLOW_EPOCHS, "batch_size": 16, "checkpoint_seconds": 0},
)
# Plain SGD at a learning rate this high diverges: epoch 1 is finite, the loss
# overflows early in epoch 2 (measured: inf in epoch 2, batch 4).
DIVERGES = tiny_config(
    model={"input_shape": [3], "layers": [{"type": "normalization"}, {"type": "dense", "units": 8}, {"type": "dense", "units": 1}]},
    training={"loss": "mean_squared_error", "metrics": [], "epochs": 30, "checkpoint_seconds": 0, "optimizer": {"name": "sgd", "learning_rate": 0.6}},
)  # fmt: skip
NAN_MESSAGE = re.compile(
    r"error: training: the loss became (nan|inf) in epoch (\d+), "
    r"(batch (\d+)|one of batches (\d+)-(\d+) \(run in one call: steps_per_execution (\d+)\)); "
    r"try a lower learning rate, normalized inputs or clipnorm\n"
)


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _start(config: Path, runs: Path, *extra: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DLTOOL), "train", str(config), "--runs-dir", str(runs), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **{"env": {**os.environ, "PYTHONUNBUFFERED": "1"}, **popen},
    )  # fmt: skip


def _load(path: Path) -> Any:
    """Load a .keras file the only way dltool does: safe mode."""
    from dltool.backend import import_keras

    return import_keras().saving.load_model(path, safe_mode=True)


def _final_files_are_complete(run: Path) -> None:
    """Every file at a final path parses (JSON, CSV, YAML) or loads (.keras, in safe mode);
    anything else is one of dltool's own temporary files (``.NAME.RANDOM.tmp|.keras``)."""
    for path in sorted(run.rglob("*")):
        if path.is_dir():
            continue
        if path.name.startswith("."):
            assert re.fullmatch(r"\.[\w.-]+\.[0-9a-f]{8}\.(tmp|keras)", path.name), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
            assert rows, path
            assert {len(row) for row in rows} == {len(rows[0])}, path
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".keras":
            _load(path)


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
@pytest.mark.slow
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
    stopped_after = json.loads((run / "checkpoint" / "latest.json").read_text())["epoch"]
    assert (
        stderr == f"{word} after epoch {stopped_after}; resume with: dltool train --resume {run}\n"
    )
    assert 2 <= stopped_after < SLOW_EPOCHS
    assert not (run / "model.keras").exists()

    resumed = run_cli("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming {run} after epoch {stopped_after} of {SLOW_EPOCHS}" in resumed.stdout
    history = _history(run)
    assert [row["epoch"] for row in history] == [str(e) for e in range(1, SLOW_EPOCHS + 1)]
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


@pytest.mark.slow
def test_sigkill_leaves_complete_files_and_resumes(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Killed at three moments of an epoch (its batches, its writes): whole files only."""
    config = write_config(SLOW)
    killed = []
    for offset in (0.0, 0.12, 0.3):  # seconds after the first checkpoint; an epoch takes ~0.3 s
        runs = tmp_path / f"runs-{offset}"
        process = _start(config, runs)
        run = _wait_for_epochs(process, runs, 1)
        time.sleep(offset)
        process.kill()
        process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL
        _final_files_are_complete(run)
        assert (run / "checkpoint" / "latest.json").is_file()
        listed = json.loads(run_cli("runs", "--runs-dir", runs, "--json").stdout)
        assert [row["status"] for row in listed] == ["crashed"]
        killed.append(run)
    run = killed[0]
    edited = Path(shutil.copytree(run, tmp_path / "edited"))  # same run, config.yaml changed
    changed_config = yaml.safe_load((edited / "config.yaml").read_text())
    changed_config["model"]["layers"][1]["units"] = 99
    (edited / "config.yaml").write_text(yaml.safe_dump(changed_config))
    changed = run_cli("train", "--resume", edited)
    assert changed.exit_code == 2
    assert "config.yaml's model, data or optimizer changed since the checkpoint" in changed.stderr
    resumed = run_cli("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert len(_history(run)) == SLOW_EPOCHS


@pytest.mark.slow
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
    with RunDir.open(run).writing():  # as the process that trains it would
        running = run_cli("train", "--resume", run)
    assert running.stderr == (
        f"error: {run}: the run is in use by pid {os.getpid()} on host "
        f"{__import__('platform').node()} (one process writes a run folder at a time; "
        "wait for it to end or stop it, then try again)\n"
    )
    crashed = run_cli("train", "--resume", run)  # run.json says running, but nobody writes it
    assert crashed.stderr == (
        f"error: {run}: no checkpoint to resume from (it stopped before its first one); "
        "train it again\n"
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


@pytest.mark.slow
def test_nan_stops_a_real_run_and_keeps_the_last_finite_checkpoint(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    process = _start(write_config(DIVERGES), tmp_path / "runs")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 3, stdout + stderr
    found = NAN_MESSAGE.fullmatch(stderr)
    assert found, stderr
    epoch, batch = int(found[2]), int(found[4])
    assert epoch >= 2  # a finite epoch came first (measured: epoch 2, batch 4)
    assert 1 <= batch <= 7  # 200 rows in batches of 32
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["error"]) == ("failed", stderr.removeprefix("error: ").strip())
    assert not (run / "model.keras").exists()  # never a final model from NaN weights
    saved = json.loads((run / "checkpoint" / "latest.json").read_text())
    assert (saved["epoch"], saved["file"]) == (epoch - 1, f"epoch-{epoch - 1:04d}.keras")
    import numpy as np

    model = _load(run / "checkpoint" / saved["file"])
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.slow
def test_nan_message_names_the_batches_of_one_call(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """With steps_per_execution 4 Keras reports every 4th batch: the message gives the range."""
    config = {**DIVERGES, "training": {**DIVERGES["training"], "steps_per_execution": 4}}
    result = run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.stdout
    found = NAN_MESSAGE.fullmatch(result.stderr)
    assert found, result.stderr
    # 200 rows in batches of 32 = 7 batches, run as 1-4 and 5-7
    assert (found[5], found[6], found[7]) in {("1", "4", "4"), ("5", "7", "4")}


@pytest.mark.slow
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


@pytest.mark.parametrize("where", ["fit", "evaluation", "not-memory"])
@pytest.mark.slow
def test_out_of_memory_is_one_line_and_exit_3(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:  # fmt: skip
    """Memory running out is the size of the data, batch or model, not a bug in dltool: it
    was "internal error: ResourceExhaustedError: ... (a bug in dltool ...)", exit 1 (a streamed
    folder of 512x512 images under `ulimit -v 3000000`). Now one line, exit 3, run.json failed,
    the last completed epoch in checkpoint/. TensorFlow's ResourceExhaustedError about anything
    else (a full disk, too many open files) is not called out of memory."""
    import tensorflow as tf

    from dltool import training

    said = {
        "fit": "Graph execution error: OOM when allocating tensor with shape[32,512,512,3] and type float on /job:localhost",
        "not-memory": "Too many open files",
    }

    def oom(*args: Any, **kwargs: Any) -> None:  # TensorFlow's allocator, as in that run
        raise tf.errors.ResourceExhaustedError(None, None, said[where])

    def no_memory(*args: Any, **kwargs: Any) -> None:  # NumPy's, once the epochs are done
        raise MemoryError("Unable to allocate 2.05 GiB for an array")

    if where == "evaluation":
        monkeypatch.setattr(training, "predict", no_memory)
    else:
        monkeypatch.setattr(training, "build_training_state", oom)
    config = write_config(tiny_config(training={"epochs": 2, "batch_size": 32}))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed"
    if where == "not-memory":
        assert result.exit_code == 1, result.stderr
        assert "out of memory" not in result.stderr
        assert "ResourceExhaustedError: Too many open files" in result.stderr
        return
    what, when = {
        "fit": (
            " (OOM when allocating tensor with shape[32,512,512,3])",
            "before the first epoch ended",
        ),
        "evaluation": ("", "after epoch 2"),
    }[where]
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: training: out of memory{what} {when} (batch_size 32): try a lower "
        "training.batch_size, smaller images or model, or data.loading: stream\n",
    )
    assert info["error"].startswith("training: out of memory")
    if where == "evaluation":  # the 2 epochs were saved (checkpoint_seconds 30: not before)
        assert json.loads((run / "checkpoint" / "latest.json").read_text())["epoch"] == 2


FILE_SIZE_LIMIT = 10_000  # bytes: config.yaml, run.json and history.csv fit; a .keras does not


def _small_files_only() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.slow
def test_disk_full_at_the_first_checkpoint_exits_4(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A real write failure (RLIMIT_FSIZE): one line naming the file, exit 4, no temp files."""
    config = write_config(tiny_config(training={"epochs": 2, "checkpoint_seconds": 0}))
    process = _start(config, tmp_path / "runs", preexec_fn=_small_files_only)
    _, stderr = process.communicate(timeout=300)
    (run,) = (tmp_path / "runs").iterdir()
    target = run / "checkpoint" / "epoch-0001.keras"
    assert (process.returncode, stderr) == (4, f"error: {target}: cannot write: File too large\n")
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert not list(run.rglob(".*"))  # the half-written temporary file was removed
    assert not (run / "model.keras").exists()
    assert not target.exists()
    _final_files_are_complete(run)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_disk_full_mid_run_keeps_the_previous_checkpoint(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """The disk "fills" while a run is under way: the checkpoint before it still loads."""
    process = _start(write_config(SLOW), tmp_path / "runs")
    run = _wait_for_epochs(process, tmp_path / "runs", 1)
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    _, stderr = process.communicate(timeout=300)
    found = re.fullmatch(
        rf"error: {re.escape(str(run))}/checkpoint/epoch-(\d{{4}})\.keras: cannot write: File too large\n",
        stderr,
    )
    assert (process.returncode, bool(found)) == (4, True), stderr
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    saved = json.loads((run / "checkpoint" / "latest.json").read_text())
    assert 1 <= saved["epoch"] == int(found[1]) - 1  # the one before the failed write
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [saved["file"], "latest.json"]
    _load(run / "checkpoint" / saved["file"])
    _final_files_are_complete(run)
    assert not list(run.rglob(".*"))  # no temporary file left


def _create(runs: str, barrier: Any, results: Any) -> None:
    from dltool.rundir import RunDir

    barrier.wait()
    run = RunDir.create(Path(runs), "same", when=datetime(2026, 1, 1, 12, 0, 0))
    (run.path / "owner.txt").write_text(str(os.getpid()))
    results.put((str(run.path), os.getpid()))


@pytest.mark.slow
def test_eight_processes_same_name_same_second(tmp_path: Path) -> None:
    """The same second for certain (the real processes above rarely share one)."""
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


@pytest.mark.slow
def test_eight_dltool_processes_same_name(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Eight real `dltool train --name same` started at once: eight complete, separate folders."""
    config = write_config(tiny_config(data={"n_train": 100, "n_test": 20}))
    runs = tmp_path / "runs"
    one_thread = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    processes = [_start(config, runs, "--name", "same", env=one_thread) for _ in range(8)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0] * 8, outputs
    folders = sorted(runs.iterdir())
    assert len(folders) == 8
    assert all(re.fullmatch(r"same-\d{8}-\d{6}(-\d+)?", f.name) for f in folders), folders
    assert {json.loads((f / "run.json").read_text())["pid"] for f in folders} == {
        p.pid for p in processes
    }  # nothing mixed: each folder was written by one process
    for folder in folders:
        assert RunDir(folder).missing_files() == []
        info = json.loads((folder / "run.json").read_text())
        assert (info["status"], info["name"], len(_history(folder))) == ("completed", "same", 1)
        assert sum(f"run saved to {folder}" in out.splitlines() for out, _ in outputs) == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("a/../b", r"--name: name: not allowed", id="dotdot-slash"),
        pytest.param("a\\b", r"--name: name: not allowed", id="backslash"),
        pytest.param("a\x00b", r"--name: name: not allowed", id="nul"),
        pytest.param(".hidden", r"--name: name: not allowed", id="leading-dot"),
        pytest.param("..", r"--name: name: not allowed", id="dotdot"),
        pytest.param(
            "a..b",
            r"--name: name: not allowed \(received 'a\.\.b'; expected no '\.\.' in a run name\)",
            id="inner-dotdot",
        ),
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


@pytest.mark.slow
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
    warning, error = result.stderr.splitlines()  # the planted file no longer has the run's hash
    assert warning.startswith(f"warning: {original}: changed since training")
    assert error.startswith(f"error: {original}: ")
    assert not (tmp_path / "o.csv").exists()


UNSAFE = {
    "safe_mode set to anything but True": re.compile(r"safe_mode\s*=\s*(?!True\b)"),
    "safe_mode in a dict, not True": re.compile(r"""["']safe_mode["']\s*:\s*(?!True\b)"""),
    "enable_unsafe_deserialization": re.compile(r"enable_unsafe_deserialization"),
    "allow_pickle not False": re.compile(r"allow_pickle\s*=\s*(?!False\b)"),
    "yaml.load": re.compile(r"yaml\s*\.\s*(load|load_all|unsafe_load|full_load)\s*\("),
    "unsafe YAML loader": re.compile(r"\b(Unsafe|Full)?Loader\b|\bunsafe_load\b"),
}


def test_safe_mode_is_never_turned_off() -> None:
    """A tripwire for the source, not the proof: a name or value built at run time gets past
    any grep. test_predict.py::test_refuses_unsafe_and_broken_models loads a Lambda layer."""
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}"
        for path in sorted((REPO / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for what, pattern in UNSAFE.items()
        if pattern.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "line",
    [
        "keras.saving.load_model(path, safe_mode=False)",
        "load_model(path, safe_mode = flag)",
        "load_model(path, safe_mode=0)",
        'load_model(path, **{"safe_mode": False})',
        "keras.config.enable_unsafe_deserialization()",
        "np.load(f, allow_pickle=True)",
        "yaml.load(text)",
        "yaml.load(text, Loader=yaml.Loader)",
        "yaml.unsafe_load(text)",
    ],
)
def test_the_safe_mode_grep_catches(line: str) -> None:
    """The patterns above are not decoration: each catches what it should."""
    assert any(pattern.search(line) for pattern in UNSAFE.values())
    assert not any(
        p.search("load_model(path, safe_mode=True)")
        for p in UNSAFE.values()  # and lets the one allowed form through
    )


@pytest.mark.slow
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
    assert result.stderr == f"interrupted after epoch 2; resume with: dltool train --resume {run}\n"
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


# Big enough that writing a checkpoint takes a while (~2 MB with the optimizer state).
WIDE = tiny_config(
    data={"n_train": 800, "n_test": 40},
    model={"input_shape": [3], "layers": [{"type": "normalization"}, {"type": "dense", "units": 384, "activation": "relu"}, {"type": "dense", "units": 384, "activation": "relu"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]},
    training={"epochs": 500, "checkpoint_seconds": 1.5},
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("signals", [2, 3], ids=["second-ctrl-c", "third-ctrl-c"])
def test_more_ctrl_c_during_the_checkpoint_write(
    write_config: Callable[..., Path], tmp_path: Path, signals: int
) -> None:
    """Real SIGINTs: the first asks to stop (the last epoch is then written, checkpoints
    being only every 1.5 s); the others land while that file is being written, as soon
    as its temporary file appears. A second waits for the write; a third abandons it and
    the previous checkpoint stands. Either way the checkpoint on disk loads."""
    runs = tmp_path / "runs"
    process = _start(write_config(WIDE), runs)
    run = _wait_for_epochs(process, runs, 1)
    time.sleep(0.5)  # epochs finish every ~0.1 s: the last one is now ahead of the file
    process.send_signal(signal.SIGINT)
    folder, deadline = run / "checkpoint", time.monotonic() + 5
    epochs_on_disk: list[int] = []  # [previous checkpoint, the one being written]
    while time.monotonic() < deadline and process.poll() is None and len(epochs_on_disk) < 2:
        names = os.listdir(folder)
        if any(name.startswith(".epoch-") for name in names):
            epochs_on_disk = sorted(
                int(n.split("-")[1].split(".")[0]) for n in names if "epoch-" in n
            )
        time.sleep(0.001)
    for _ in range(signals - 1):
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    saved = json.loads((folder / "latest.json").read_text())
    assert stderr == (
        f"interrupted after epoch {saved['epoch']}; resume with: dltool train --resume {run}\n"
    )
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["error"]) == ("interrupted", "interrupted (Ctrl-C)")
    assert sorted(os.listdir(folder)) == [saved["file"], "latest.json"]  # no temporary file
    if len(epochs_on_disk) == 2:  # the signals did land during the write (the usual case)
        previous, written = epochs_on_disk
        # a second Ctrl-C lets the write finish; a third abandons it, or comes too late
        assert saved["epoch"] in ((written,) if signals == 2 else (previous, written))
    _load(folder / saved["file"])
    _final_files_are_complete(run)


@pytest.mark.slow
def test_output_piped_into_head_does_not_fail_the_run(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """`dltool train exp.yaml | head -1`: the reader goes away after one line; training
    carries on quietly (the rest of the output is discarded) and ends as usual."""
    config = write_config(tiny_config(training={"epochs": 3}))
    process = _start(config, tmp_path / "runs")
    assert process.stdout is not None
    first = process.stdout.readline()  # "tiny: 200 train, 40 test examples; ..."
    process.stdout.close()  # what head does after its one line
    _, stderr = process.communicate(timeout=300)
    assert (process.returncode, stderr) == (0, "")
    (run,) = (tmp_path / "runs").iterdir()
    assert first.startswith("tiny: 200 train, 40 test examples;")
    assert first.rstrip().endswith(f"run folder {run}")
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["epochs_completed"]) == ("completed", 3)
    assert RunDir(run).missing_files() == []


def _stopped_run(result: Any, runs: Path) -> tuple[Path, int]:
    """The run folder of an interrupted in-process train, and its checkpoint's epoch."""
    assert result.exit_code == 130, result.stderr + result.stdout
    (run,) = runs.iterdir()
    return run, json.loads((run / "checkpoint" / "latest.json").read_text())["epoch"]


def _agree_on(run: Path, result: Any, epoch: int) -> None:
    """The screen, history.csv, run.json, the checkpoint and the message all name ``epoch``."""
    assert result.stderr == f"interrupted after epoch {epoch}; resume with: dltool train --resume {run}\n"  # fmt: skip
    assert [row["epoch"] for row in _history(run)] == [str(e) for e in range(1, epoch + 1)]
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["epochs_completed"]) == ("interrupted", epoch)
    latest = json.loads((run / "checkpoint" / "latest.json").read_text())
    assert (latest["file"], len(latest["history"])) == (f"epoch-{epoch:04d}.keras", epoch)
    shown = re.findall(r"^epoch (\d+)/5", result.stdout, flags=re.MULTILINE)
    assert shown == [str(e) for e in range(1, epoch + 1)]


@pytest.mark.slow
def test_ctrl_c_while_an_epoch_is_logged_keeps_that_epoch(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Ctrl-C lands after epoch 3 was decided complete, while its row is written: the
    checkpoint is epoch 3 too (it used to stay at epoch 2 while the screen said 3)."""
    from dltool import callbacks, interrupts

    real_write_csv = callbacks.write_csv

    def write_then_signal(path: Path, header: Any, rows: list[Any]) -> None:
        real_write_csv(path, header, rows)
        if len(rows) == 3:
            interrupts.REQUEST.signum = signal.SIGINT  # as the handler records a first Ctrl-C

    monkeypatch.setattr(callbacks, "write_csv", write_then_signal)
    config = write_config(tiny_config(training={"epochs": 5}))  # checkpoint_seconds 30: in memory
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    run, epoch = _stopped_run(result, tmp_path / "runs")
    assert epoch == 3
    _agree_on(run, result, 3)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_leaves_that_epoch_out_everywhere(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Ctrl-C during epoch 3's batches: epoch 3 is not shown, logged or checkpointed."""
    from dltool import callbacks, interrupts

    real_batch_end = callbacks.StopOnNonFinite.on_train_batch_end

    def batch_end_then_signal(self: Any, batch: int, logs: Any = None) -> None:
        real_batch_end(self, batch, logs)
        if self.epoch == 2 and batch == 2:  # epoch 3 of 7 batches: cut after its third
            interrupts.REQUEST.signum = signal.SIGINT

    monkeypatch.setattr(callbacks.StopOnNonFinite, "on_train_batch_end", batch_end_then_signal)
    config = write_config(tiny_config(training={"epochs": 5}))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    run, epoch = _stopped_run(result, tmp_path / "runs")
    assert epoch == 2
    _agree_on(run, result, 2)


@pytest.mark.slow
def test_ctrl_c_twice_between_the_log_and_the_checkpoint(run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A second Ctrl-C raises in the log's own write of epoch 3, before the checkpoint
    copied it: history.csv and run.json are cut back to epoch 2, the epoch resume keeps."""
    from dltool import callbacks

    real_write_csv = callbacks.write_csv
    raised = []

    def write_then_raise(path: Path, header: Any, rows: list[Any]) -> None:
        real_write_csv(path, header, rows)
        if len(rows) == 3 and not raised:
            raised.append(True)
            raise KeyboardInterrupt  # as the handler raises a second Ctrl-C

    monkeypatch.setattr(callbacks, "write_csv", write_then_raise)
    config = write_config(tiny_config(training={"epochs": 5}))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    run, epoch = _stopped_run(result, tmp_path / "runs")
    assert epoch == 2
    assert result.stderr == f"interrupted after epoch 2; resume with: dltool train --resume {run}\n"
    assert [row["epoch"] for row in _history(run)] == ["1", "2"]
    assert json.loads((run / "run.json").read_text())["epochs_completed"] == 2
