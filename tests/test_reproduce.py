"""Data fingerprints, training.deterministic, `dltool reproduce`, `dltool continue` and
model.init_from."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import tiny_config
from dltool import fingerprint
from dltool.errors import DataError, ExitCode, NotReproduced

Cli = Callable[..., Any]


# ------------------------------------------------------------------ fingerprints, no training


def test_split_digest_covers_bytes_dtype_and_shape() -> None:
    x = np.arange(12, dtype="float32").reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    digest = fingerprint.split_digest(x, y, {})
    assert digest == fingerprint.split_digest(x.copy(), y.copy(), {})
    changed = x.copy()
    changed[3, 2] += 1
    others = [
        fingerprint.split_digest(changed, y, {}),  # one value
        fingerprint.split_digest(x.astype("float64"), y, {}),  # the dtype
        fingerprint.split_digest(x.reshape(4, 3, 1), y, {}),  # the shape
        fingerprint.split_digest(x, y[::-1].copy(), {}),  # the labels
        fingerprint.split_digest(x[::-1], y, {}),  # the order
    ]
    assert len({digest, *others}) == 6


def test_streamed_table_hashes_in_chunks_like_the_array(monkeypatch: pytest.MonkeyPatch) -> None:
    from dltool.data.rows import ArrayReader, Rows

    x = np.random.default_rng(0).normal(size=(1000, 5)).astype("float32")
    y = np.arange(1000) % 2
    whole = fingerprint.split_digest(x, y, {})
    monkeypatch.setattr("dltool.data.rows.CHUNK_BYTES", 64)  # 3 rows a chunk (its one owner)
    rows = Rows.of(ArrayReader(x), len(x))
    assert fingerprint.split_digest(rows, y, {}) == whole
    # a float64 .npy streamed is read as float32, as training reads it: the same digest as
    # the float32 array the same file gives in memory
    stored_wide = Rows.of(ArrayReader(x.astype("float64")), len(x))
    assert fingerprint.split_digest(stored_wide, y, {}) == whole
    assert fingerprint.split_digest(x, y, {}) == whole
    picked = np.array([5, 2, 900])
    assert fingerprint.split_digest(rows[picked], y[picked], {}) == fingerprint.split_digest(x[picked], y[picked], {})  # fmt: skip


def _image_folder(root: Path) -> list[Path]:
    from PIL import Image

    files = []
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for index in range(3):
            path = root / name / f"{index}.png"
            Image.new("RGB", (4, 4), (label * 100, index * 40, 7)).save(path)
            files.append(path)
    (root / "README.txt").write_text("not data")  # beside the class folders: not hashed
    return files


def test_image_folder_fingerprint_reads_files_not_pixels(tmp_path: Path) -> None:
    from dltool.data.rows import ImageReader, Rows

    files = _image_folder(tmp_path / "images")
    sources, per_file = fingerprint.hash_sources([str(tmp_path / "images")])
    assert sorted(per_file) == sorted(str(f) for f in files)
    reader = ImageReader(files, (4, 4), "rgb", 3)
    rows, y = Rows.of(reader, len(files)), np.array([0, 0, 0, 1, 1, 1])
    digest = fingerprint.split_digest(rows, y, per_file)
    assert fingerprint.split_digest(rows, y, {}) == digest  # the same without the cache
    assert reader.failed == {}
    assert not reader.resized
    (tmp_path / "images" / "README.txt").write_text("edited")
    assert fingerprint.hash_sources([str(tmp_path / "images")])[0] == sources
    files[4].write_bytes(files[0].read_bytes())
    changed, _ = fingerprint.hash_sources([str(tmp_path / "images")])
    assert changed != sources
    assert fingerprint.split_digest(rows, y, {}) != digest


def test_check_sources_names_the_changed_or_missing_file(tmp_path: Path) -> None:
    files = _image_folder(tmp_path / "images")
    table = tmp_path / "table.csv"
    table.write_text("a,label\n1,0\n")
    paths = [str(tmp_path / "images"), str(table)]
    sources, per_file = fingerprint.hash_sources(paths)
    recorded = {"format": fingerprint.FORMAT, "sources": sources}
    assert fingerprint.check_sources(recorded, per_file) == per_file  # unchanged: passes

    files[2].write_bytes(b"another image")
    then, now = per_file[str(files[2])][:12], fingerprint.sha256_file(files[2])[:12]
    with pytest.raises(DataError) as changed:
        fingerprint.check_sources(recorded, per_file)
    assert str(changed.value) == (
        f"{files[2]}: changed since the run trained on it (SHA-256 {then}... then, {now}... "
        "now); refusing to use different data"
    )
    files[2].unlink()
    (tmp_path / "images" / "dog" / "new.png").write_bytes(b"x")
    with pytest.raises(DataError) as removed:
        fingerprint.check_sources(recorded, per_file)
    assert str(removed.value) == (
        f"{files[2]}: missing; the run trained on it; 1 more file differs; refusing to use "
        "different data"
    )
    table.unlink()
    with pytest.raises(DataError, match=rf"^{table}: missing; the run trained on it"):
        fingerprint.check_sources(recorded, per_file)


def test_check_splits_refuses_other_examples_from_the_same_files() -> None:
    recorded = {"format": fingerprint.FORMAT, "train": "a" * 64, "test": "b" * 64, "image_files": False}  # fmt: skip
    same = fingerprint.Fingerprint({"train": "a" * 64, "test": "b" * 64}, {})
    fingerprint.check_splits(recorded, same, "exp.yaml")
    other = fingerprint.Fingerprint({"train": "a" * 64, "test": "c" * 64}, {})
    with pytest.raises(DataError) as refused:
        fingerprint.check_splits(recorded, other, "exp.yaml")
    assert str(refused.value) == (
        f"exp.yaml: data: the test split differs from the one the run trained on (SHA-256 "
        f"{'b' * 12}... then, {'c' * 12}... now); refusing to use different data"
    )
    by_file = fingerprint.Fingerprint({"train": "d" * 64}, {}, image_files=True)
    fingerprint.check_splits(recorded, by_file, "exp.yaml")  # by file vs by pixel: not compared
    fingerprint.check_splits({**recorded, "format": 0}, other, "exp.yaml")  # another format


def test_each_source_names_the_files_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from pydantic import TypeAdapter

    from dltool.config import DataConfig

    def paths(data: dict[str, Any]) -> list[str]:
        spec = TypeAdapter(DataConfig).validate_python(data, context={"base_dir": tmp_path})
        return spec.source_paths()

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    table = {"source": "csv", "path": "a.csv", "test_path": "b.csv", "target": "label"}
    assert paths(table) == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert paths({"source": "numpy", "path": "x.npy", "labels_path": "y.npy"}) == [str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]  # fmt: skip
    assert paths({"source": "builtin", "name": "mnist"}) == [str(tmp_path / "keras" / "datasets" / "mnist.npz")]  # fmt: skip
    assert paths({"source": "builtin", "name": "digits"}) == []  # scikit-learn's bundled copy
    assert paths({"source": "student"}) == []  # generated: the split digests cover it


def _fake_run(folder: Path, data_fingerprint: dict[str, Any] | None) -> Path:
    from dltool.config import validate_config

    folder.mkdir(parents=True)
    config = validate_config(tiny_config(), "x").model_dump(mode="json")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    info: dict[str, Any] = {"status": "completed", "name": folder.name}
    if data_fingerprint is not None:
        info["data_fingerprint"] = data_fingerprint
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_runs_compare_shows_differing_data(run_cli: Cli, tmp_path: Path) -> None:
    same = {"format": 1, "train": "a" * 64, "validation": "b" * 64, "test": "c" * 64, "sources": {"/d/t.csv": "d" * 64}}  # fmt: skip
    first = _fake_run(tmp_path / "first", same)
    second = _fake_run(tmp_path / "second", same)
    older = _fake_run(tmp_path / "older", None)
    alike = run_cli("runs", "compare", first, second, "--json")
    assert json.loads(alike.stdout)["data_differences"] == {}
    other = _fake_run(tmp_path / "other", {**same, "test": "e" * 64, "sources": {"/d/t.csv": "f" * 64}})  # fmt: skip
    result = run_cli("runs", "compare", first, other, older, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["data_differences"] == {
        "data.train": ["a" * 12, "a" * 12, None],
        "data.validation": ["b" * 12, "b" * 12, None],
        "data.test": ["c" * 12, "e" * 12, None],
        "data source /d/t.csv": ["d" * 12, "f" * 12, None],
    }
    plain = run_cli("runs", "compare", first, other)
    assert "data.test\tcccccccccccc\teeeeeeeeeeee\n" in plain.stdout
    assert "data source /d/t.csv\tdddddddddddd\tffffffffffff\n" in plain.stdout
    assert "data.train" not in plain.stdout  # the same in both
    page = tmp_path / "compare.html"
    assert run_cli("runs", "compare", first, other, "--html", page).exit_code == 0
    html = page.read_text()
    assert "Data that differs (SHA-256)" in html
    assert "<td>cccccccccccc</td><td>eeeeeeeeeeee</td>" in html


def test_epoch_log_of_a_continued_run_counts_the_parents_epochs(tmp_path: Path) -> None:
    """A continued run's history starts after its parent's epochs: checkpoints and --resume
    count from there (epoch numbers are the whole model's, rows only this run's)."""
    from rich.console import Console

    from dltool.callbacks import EpochLog
    from dltool.rundir import RunDir

    rows = [{"epoch": 3, "loss": 0.5}, {"epoch": 4, "loss": 0.4}]
    log = EpochLog(RunDir(tmp_path), Console(quiet=True), epochs=5, rows=rows, offset=2)
    assert log.last_epoch == 4
    assert log.completed(3)  # epoch 4 (from 0: 3) is the last logged
    assert not log.completed(4)
    assert log.rows_until(3) == rows[:1]
    assert log.rows_until(2) == []
    log.keep(3)  # the checkpoint holds epoch 3: forget epoch 4
    assert log.rows == rows[:1]
    assert (tmp_path / "history.csv").read_text().splitlines() == ["epoch,loss", "3,0.5"]


# ---------------------------------------------------------------------------- training


def _weights(run: Path) -> list[np.ndarray]:
    """Every array in a run's model.keras (layers and optimizer), in file order."""
    import h5py

    with zipfile.ZipFile(run / "model.keras") as archive:
        data = archive.read("model.weights.h5")
    arrays: list[np.ndarray] = []
    with h5py.File(io.BytesIO(data)) as weights:
        weights.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)  # fmt: skip
    return arrays


def _assert_same_weights(first: Path, second: Path) -> None:
    mine, theirs = _weights(first), _weights(second)
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs, strict=True):
        assert a.tobytes() == b.tobytes()


def _csv_experiment(folder: Path, **training: Any) -> Path:
    """A CSV table with a learnable rule, and a deterministic experiment on it (with dropout
    and a learning-rate schedule: both must carry on when a run continues)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(160, 3))
    label = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["a,b,c,label", *(f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{t}" for r, t in zip(x, label, strict=True))]  # fmt: skip
    (folder / "table.csv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "table",
        "seed": 5,
        "data": {"source": "csv", "path": "table.csv", "target": "label", "validation_split": 0.2},
        "model": {
            "input_shape": [3],
            "layers": [
                {"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dropout", "rate": 0.3},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ],
        },
        "training": {
            "loss": "sparse_categorical_crossentropy",
            "epochs": 2,
            "batch_size": 16,
            "deterministic": True,
            "learning_rate_schedule": {
                "type": "exponential_decay",
                "decay_steps": 3,
                "decay_rate": 0.8,
            },
            **training,
        },
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _history(run: Path) -> list[str]:
    return (run / "history.csv").read_text().splitlines()


def _only_new(runs: Path, before: set[Path]) -> Path:
    (new,) = set(runs.iterdir()) - before
    return new


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed deterministic run on a CSV file; tests copy the folder (and its data)."""
    from typer.testing import CliRunner

    from dltool.cli import app

    base = tmp_path_factory.mktemp("table")
    config = _csv_experiment(base)
    trained = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(base / "runs")])
    assert trained.exit_code == 0, trained.stderr
    (run,) = (base / "runs").iterdir()
    return run


@pytest.fixture
def table_copy(table_run: Path, tmp_path: Path) -> Path:
    """A private copy of the experiment folder (data, config, runs/); returns the run."""
    shutil.copytree(table_run.parents[1], tmp_path / "table")
    copy = tmp_path / "table" / "runs" / table_run.name
    # the copied run names the original data file: point it at the copy
    for name in ("run.json", "config.yaml"):
        text = (copy / name).read_text().replace(str(table_run.parents[1]), str(tmp_path / "table"))  # fmt: skip
        (copy / name).write_text(text)
    return copy


@pytest.mark.slow
def test_run_records_data_fingerprint(table_run: Path) -> None:
    info = json.loads((table_run / "run.json").read_text())
    recorded = info["data_fingerprint"]
    table = str(table_run.parents[1] / "table.csv")
    assert recorded["sources"] == {table: fingerprint.sha256_file(Path(table))}
    assert all(len(recorded[split]) == 64 for split in ("train", "validation", "test"))
    assert len({recorded[split] for split in ("train", "validation", "test")}) == 3
    assert "fingerprint" in info["timings"]


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical(run_cli: Cli, table_copy: Path) -> None:
    runs = table_copy.parent
    before = set(runs.iterdir())
    again = run_cli("train", runs.parent / "exp.yaml", "--runs-dir", runs)
    assert again.exit_code == 0, again.stderr
    second = _only_new(runs, before)
    _assert_same_weights(table_copy, second)
    assert (table_copy / "metrics.json").read_text() == (second / "metrics.json").read_text()
    assert (table_copy / "predictions.csv").read_text() == (second / "predictions.csv").read_text()
    from tensorflow.python.framework import config as framework_config

    assert framework_config.is_op_determinism_enabled()  # the last run asked for it
    plain = tiny_config(name="plain")
    (runs.parent / "plain.yaml").write_text(yaml.safe_dump(plain))
    assert run_cli("train", runs.parent / "plain.yaml", "--runs-dir", runs).exit_code == 0
    assert not framework_config.is_op_determinism_enabled()  # off again for a run without it


@pytest.mark.slow
def test_reproduce_passes_on_an_unchanged_run(run_cli: Cli, table_copy: Path) -> None:
    runs = table_copy.parent
    before = set(runs.iterdir())
    result = run_cli("reproduce", table_copy)
    assert result.exit_code == 0, result.stderr
    new = _only_new(runs, before)
    assert "metric\toriginal\treproduced\tdifference\tcheck\n" in result.stdout
    assert "test.accuracy\t" in result.stdout
    assert "\tdiffers" not in result.stdout
    assert f"reproduced in {new}\n" in result.stdout
    assert json.loads((new / "run.json").read_text())["reproduces"] == str(table_copy)
    _assert_same_weights(table_copy, new)


@pytest.mark.slow
def test_reproduce_exits_3_when_a_metric_differs(run_cli: Cli, table_copy: Path) -> None:
    metrics = json.loads((table_copy / "metrics.json").read_text())
    metrics["test"]["loss"] += 1e-6  # as if the first run had ended elsewhere
    (table_copy / "metrics.json").write_text(json.dumps(metrics))
    result = run_cli("reproduce", table_copy)
    assert result.exit_code == NotReproduced.exit_code == ExitCode.TRAINING_FAILED == 3
    assert "test.loss\t" in result.stdout
    assert "\tdiffers\n" in result.stdout
    assert result.stderr.startswith(
        "error: reproduce: 1 of 6 metrics differ (test.loss); expected exactly equal "
        "(training.deterministic); new run: "
    )
    loose = run_cli("reproduce", table_copy, "--tolerance", "0.001")
    assert loose.exit_code == 0, loose.stderr


@pytest.mark.slow
def test_reproduce_refuses_changed_or_missing_data(run_cli: Cli, table_copy: Path) -> None:
    runs = table_copy.parent
    table = runs.parent / "table.csv"
    before = set(runs.iterdir())
    table.write_text(table.read_text().replace("\n0.", "\n0.1", 1))
    changed = run_cli("reproduce", table_copy)
    assert changed.exit_code == 2
    assert changed.stderr.startswith(f"error: {table}: changed since the run trained on it (SHA-256 ")  # fmt: skip
    assert changed.stderr.endswith(" now); refusing to use different data\n")
    assert changed.stderr.count("\n") == 1
    table.unlink()
    missing = run_cli("reproduce", table_copy)
    assert (missing.exit_code, missing.stderr) == (
        2,
        f"error: {table}: missing; the run trained on it (restore it, or train a new run)\n",
    )
    again = run_cli("continue", table_copy, "--epochs", "1")
    assert (again.exit_code, again.stderr) == (2, missing.stderr)
    assert set(runs.iterdir()) == before  # nothing written


@pytest.mark.slow
def test_continue_equals_one_uninterrupted_run(run_cli: Cli, table_copy: Path) -> None:
    runs = table_copy.parent
    before = set(runs.iterdir())
    continued = run_cli("continue", table_copy, "--epochs", "3")
    assert continued.exit_code == 0, continued.stderr
    assert f"continuing {table_copy} after epoch 2, to epoch 5" in continued.stdout
    child = _only_new(runs, before)
    before = set(runs.iterdir())
    whole = run_cli("train", runs.parent / "exp.yaml", "--runs-dir", runs, "--set", "training.epochs=5")  # fmt: skip
    assert whole.exit_code == 0, whole.stderr
    uninterrupted = _only_new(runs, before)

    _assert_same_weights(child, uninterrupted)  # weights and optimizer state, to the bit
    info = json.loads((child / "run.json").read_text())
    assert (info["parent"], info["continued_from_epoch"], info["epochs_completed"]) == (str(table_copy), 2, 5)  # fmt: skip
    assert yaml.safe_load((child / "config.yaml").read_text())["training"]["epochs"] == 5
    assert f"continues</td><td>{table_copy} after epoch 2</td>" in (child / "report.html").read_text()  # fmt: skip
    history = (child / "history.csv").read_text().splitlines()
    full = (uninterrupted / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["3", "4", "5"]
    drop_time = [",".join(line.split(",")[:-1]) for line in full[3:]]  # duration_s differs
    assert [",".join(line.split(",")[:-1]) for line in history[1:]] == drop_time
    assert (child / "metrics.json").read_text() == (uninterrupted / "metrics.json").read_text()

    before = set(runs.iterdir())
    again = run_cli("reproduce", child)  # a continued run is reproduced from its parent
    assert again.exit_code == 0, again.stderr
    redone = json.loads((_only_new(runs, before) / "run.json").read_text())
    assert (redone["parent"], redone["reproduces"]) == (str(table_copy), str(child))


@pytest.mark.slow
def test_continue_refuses_what_is_not_a_completed_run(run_cli: Cli, tmp_path: Path) -> None:
    nothing = run_cli("continue", tmp_path, "--epochs", "2")
    assert (nothing.exit_code, nothing.stderr) == (
        2,
        f"error: {tmp_path}: not a dltool run folder (no run.json)\n",
    )
    no_epochs = run_cli("continue", tmp_path)
    assert no_epochs.exit_code == 2
    assert "--epochs" in no_epochs.stderr


def test_continue_refuses_a_model_changed_since_training(run_cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    (run / "model.keras").write_bytes(b"edited")
    info = {"status": "completed", "task": "binary", "epochs_completed": 2, "model_sha256": "0" * 64}  # fmt: skip
    (run / "run.json").write_text(json.dumps(info))
    result = run_cli("continue", run, "--epochs", "2", "--runs-dir", tmp_path / "more")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {run / 'model.keras'}: changed since training (SHA-256 "
    )
    assert result.stderr.endswith(
        "; refusing to continue from a model that is not the one trained\n"
    )
    assert not (tmp_path / "more").exists()


@pytest.mark.slow
def test_init_from_starts_from_another_runs_weights(run_cli: Cli, table_copy: Path) -> None:
    runs = table_copy.parent
    config = yaml.safe_load((runs.parent / "exp.yaml").read_text())
    config["model"]["init_from"] = f"runs/{table_copy.name}"  # relative to the config file
    config["training"]["epochs"] = 1
    (runs.parent / "init.yaml").write_text(yaml.safe_dump(config))
    more = runs.parent / "more"
    result = run_cli("train", runs.parent / "init.yaml", "--runs-dir", more)
    assert result.exit_code == 0, result.stderr
    (new,) = more.iterdir()
    resolved = yaml.safe_load((new / "config.yaml").read_text())
    assert resolved["model"]["init_from"] == str(table_copy)
    # started where the other run ended: its first epoch already beats the other's first
    first_loss = [float(_history(run)[1].split(",")[1]) for run in (table_copy, new)]
    assert first_loss[1] < first_loss[0]

    config["model"]["layers"][0]["units"] = 5
    (runs.parent / "init.yaml").write_text(yaml.safe_dump(config))
    wrong = run_cli("train", runs.parent / "init.yaml", "--runs-dir", more)
    assert (wrong.exit_code, wrong.stderr) == (
        2,
        f"error: {runs.parent / 'init.yaml'}: model.init_from: layer 2 with weights (dense) has "
        f"weight shapes [[3, 5], [5]] here and [[3, 8], [8]] in {table_copy} (expected the "
        "same shapes)\n",
    )
