"""Data bigger than memory: streamed image folders, CSV tables and .npy arrays.

The streamed path must agree with the in-memory one (the same splits, pixels, rows,
labels, refusals and metrics), see every example once per epoch, skip or refuse a
file that fails only when decoded, and keep memory flat.
"""

from __future__ import annotations

import collections
import json
import os
import re
import resource
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from dltool.data import load_dataset
from dltool.data.images import ImageFolderData
from dltool.data.rows import ArrayReader, Rows
from dltool.data.tabular import CsvData, NumpyData
from dltool.errors import DataError

DLTOOL = Path(sys.executable).parent / "dltool"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache folder (decoded images, converted CSV tables)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DLTOOL_CACHE_DIR", str(folder))
    return folder


def _arrays(dataset: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's examples in memory (Rows read whole) and labels."""
    return {
        name: (x.load()[0] if isinstance(x, Rows) else np.asarray(x), np.asarray(y))
        for name, (x, y) in dataset.splits().items()
    }


def _assert_same(one: Any, other: Any) -> None:
    first, second = _arrays(one), _arrays(other)
    assert list(first) == list(second)
    for name in first:
        np.testing.assert_array_equal(first[name][0], second[name][0], err_msg=name)
        np.testing.assert_array_equal(first[name][1], second[name][1], err_msg=name)
    assert one.class_names == other.class_names
    assert one.feature_names == other.feature_names


# --------------------------------------------------------------------------- images


def _images(root: Path, counts: dict[str, int], size: tuple[int, int] = (9, 7)) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for number in range(count):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{number:03d}.png")
    return root


def _image_config(root: Path, **settings: Any) -> ImageFolderData:
    return ImageFolderData.model_validate(
        {"source": "image_folder", "path": str(root), "image_size": [6, 8], **settings}
    )


def test_streamed_and_cached_images_have_the_in_memory_splits_and_pixels(tmp_path: Path, cache: Path) -> None:  # fmt: skip
    root = _images(tmp_path / "pictures", {"cat": 7, "dog": 5, "emu": 6})
    settings = {"validation_split": 0.2, "test_split": 0.25}
    memory = load_dataset(_image_config(root, loading="memory", **settings), 3, "multiclass")
    streamed = load_dataset(_image_config(root, loading="stream", **settings), 3, "multiclass")
    assert isinstance(streamed.x_train, Rows)
    assert not isinstance(memory.x_train, Rows)
    _assert_same(memory, streamed)
    assert streamed.notes["loading"]["mode"] == "stream"
    assert memory.notes["loading"]["why"] == "data.loading: memory"

    cached = load_dataset(_image_config(root, cache="disk", **settings), 3, "multiclass")
    _assert_same(memory, cached)
    (entry,) = cache.iterdir()  # one entry, reused by the next run on the same files
    assert np.load(entry / "pixels.npy", mmap_mode="r").dtype == np.uint8
    again = load_dataset(_image_config(root, cache="disk", **settings), 3, "multiclass")
    _assert_same(memory, again)
    assert [p.name for p in cache.iterdir()] == [entry.name]
    (root / "cat" / "000.png").unlink()  # the files changed: a new entry
    load_dataset(_image_config(root, cache="disk", **settings), 3, "multiclass")
    assert len(list(cache.iterdir())) == 2


def test_auto_streams_only_beyond_the_in_memory_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    root = _images(tmp_path / "pictures", {"cat": 3, "dog": 3})
    small = _image_config(root).load(0, "multiclass")
    assert small.notes["loading"] == {
        "mode": "memory",
        "why": "3,456 bytes of pixels, at most 128.0 MB",
        "prescan_s": small.notes["loading"]["prescan_s"],
        "decode_s": small.notes["loading"]["decode_s"],
    }
    monkeypatch.setattr("dltool.data.source.IN_MEMORY_BYTES", 500)
    big = _image_config(root).load(0, "multiclass")
    assert isinstance(big.x_train, Rows)
    assert big.notes["loading"]["why"] == "3,456 bytes of pixels, over 500 bytes"


def _truncated_jpeg(folder: Path) -> Path:
    """A JPEG cut short: Pillow's verify passes it, decoding fails."""
    buffer = folder / "whole.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer)
    cut = folder / "cut.jpg"
    cut.write_bytes(buffer.read_bytes()[:800])
    buffer.unlink()
    return cut


def test_dltool_data_names_a_streamed_file_it_could_not_decode(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = _images(tmp_path / "pictures", {"cat": 3, "dog": 3})
    cut = _truncated_jpeg(root / "dog")
    data = {"source": "image_folder", "path": str(root), "image_size": [6, 8], "loading": "stream"}  # fmt: skip
    config = tiny_config(model={"input_shape": [6, 8, 3], "layers": [{"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}]})  # fmt: skip
    config["data"] = data
    config["training"]["loss"] = "sparse_categorical_crossentropy"
    path = write_config(config)
    result = run_cli("data", path, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "out").glob("*/*/*.png"))) == 6
    assert result.stderr.startswith(f"note: {cut}: not a readable image (")
    assert result.stderr.rstrip().endswith("(it failed to decode: not written)")


def test_a_file_that_fails_only_when_streamed_is_unusable_not_dropped(tmp_path: Path) -> None:
    root = _images(tmp_path / "pictures", {"cat": 3, "dog": 3})
    cut = _truncated_jpeg(root / "dog")
    dataset = _image_config(root, loading="stream").load(0, "multiclass")
    assert len(dataset.x_train) == 7  # the pre-scan cannot tell
    pixels, usable = dataset.x_train.read(np.arange(7))
    assert usable.tolist() == [True] * 6 + [False]  # dog/cut.jpg sorts after dog/002.png
    assert not pixels[6].any()
    ((file, reason),) = dataset.x_train.reader.failures()
    assert file == cut
    assert re.fullmatch(re.escape("not a readable image (OSError: ") + ".*", reason)

    with pytest.raises(DataError) as refused:  # strict: refused before training, as in memory
        _image_config(root, loading="stream", strict=True).load(0, "multiclass")
    assert refused.value.lines[0].startswith(f"{cut}: not a readable image")
    assert refused.value.lines[-1].startswith("data.strict: 1 unusable file refused")
    cached = _image_config(root, cache="disk").load(0, "multiclass")  # filling the cache finds it
    assert len(cached.x_train) == 6
    assert cached.notes["skipped"]["count"] == 1


# ----------------------------------------------------------------------------- tables


def _csv(path: Path, rows: int, trailing: str = "\n\n") -> Path:
    rng = np.random.default_rng(1)
    lines = ["a,b,c,label"]
    for i in range(rows):
        lines.append(f"{rng.normal():.4f},{rng.normal():.4f},{rng.integers(0, 5)},{['cat', 'dog', 'bird'][i % 3]}")  # fmt: skip
    path.write_text("\n".join(lines) + trailing)
    return path


def _csv_config(path: Path, **settings: Any) -> CsvData:
    return CsvData.model_validate({"source": "csv", "path": str(path), "target": "label", **settings})  # fmt: skip


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_a_streamed_csv_gives_the_in_memory_rows_labels_and_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str) -> None:  # fmt: skip
    monkeypatch.setattr("dltool.data.table_stream.CHUNK_ROWS", 97)  # many chunks, odd sizes
    table = _csv(tmp_path / "t.csv", 1000)
    test_table = _csv(tmp_path / "test.csv", 130)
    settings: dict[str, Any] = {"validation_split": 0.1, "test_path": str(test_table)}
    if task == "regression":
        settings.update(target="a", features=["b", "c"])
    memory = load_dataset(_csv_config(table, loading="memory", **settings), 5, task)
    streamed = load_dataset(_csv_config(table, loading="stream", **settings), 5, task)
    assert isinstance(streamed.x_train, Rows)
    _assert_same(memory, streamed)
    assert streamed.notes["rows"] == 1000
    assert streamed.notes["test_rows"] == 130


def test_a_streamed_csv_refuses_bad_cells_with_file_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr("dltool.data.table_stream.CHUNK_ROWS", 50)
    table = _csv(tmp_path / "t.csv", 300)
    lines = table.read_text().splitlines()
    lines[120] = "x,1,2,cat"  # line 121 of the file, in the third chunk
    lines[251] = ",,,"  # an empty row in the middle: refused; trailing ones are not
    lines[260] = "1,2,3,"  # an empty label
    table.write_text("\n".join(lines) + "\n\n\n")
    expected = [
        f"{table}: line 121, column 'a': 'x' is not a number",
        f"{table}: line 252: an empty row",
        f"{table}: line 261, column 'label': empty cell",
    ]
    for loading in ("memory", "stream"):
        with pytest.raises(DataError) as refused:
            _csv_config(table, loading=loading).load(0, "multiclass")
        assert refused.value.lines == expected, loading


def test_an_unknown_test_class_names_its_line_when_streamed(tmp_path: Path) -> None:
    table = _csv(tmp_path / "t.csv", 30)
    test_table = _csv(tmp_path / "test.csv", 5)
    test_table.write_text(test_table.read_text().replace(",dog", ",wolf", 1))
    with pytest.raises(DataError) as refused:
        _csv_config(table, loading="stream", test_path=str(test_table)).load(0, "multiclass")
    assert refused.value.lines == [
        f"{test_table}: line 3, column 'label': unknown class 'wolf' (the training file has 'bird', 'cat', 'dog')"
    ]


def test_streamed_and_in_memory_csv_map_test_classes_alike(tmp_path: Path) -> None:
    """Numeric classes match by value ("2.0" is class "2"); text classes match as written
    (pandas decides what is a number: "1_0" is text, and "10" is not class "1_0")."""
    (tmp_path / "numbers.csv").write_text("x,label\n1,1\n2,2\n3,1\n4,2\n")
    (tmp_path / "numbers-test.csv").write_text("x,label\n1,2.0\n2,1\n")
    (tmp_path / "texts.csv").write_text("x,label\n1,1_0\n2,2\n3,1_0\n4,2\n")
    (tmp_path / "texts-test.csv").write_text("x,label\n1,2\n2,10\n")
    for loading in ("memory", "stream"):
        numbers = _csv_config(tmp_path / "numbers.csv", loading=loading, test_path=str(tmp_path / "numbers-test.csv"))  # fmt: skip
        dataset = numbers.load(0, "multiclass")
        assert (dataset.class_names, dataset.y_test.tolist()) == (["1", "2"], [1, 0]), loading
        texts = _csv_config(tmp_path / "texts.csv", loading=loading, test_path=str(tmp_path / "texts-test.csv"))  # fmt: skip
        with pytest.raises(DataError) as refused:
            texts.load(0, "multiclass")
        assert refused.value.lines == [
            f"{tmp_path / 'texts-test.csv'}: line 3, column 'label': unknown class '10' "
            "(the training file has '1_0', '2')"
        ], loading


def test_a_big_npy_is_memory_mapped_and_checked(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(200, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(200) % 2)
    config = {"source": "numpy", "path": str(tmp_path / "x.npy"), "labels_path": str(tmp_path / "y.npy"), "validation_split": 0.1}  # fmt: skip
    memory = load_dataset(NumpyData.model_validate({**config, "loading": "memory"}), 2, "binary")
    mapped = load_dataset(NumpyData.model_validate({**config, "loading": "stream"}), 2, "binary")
    assert isinstance(mapped.x_train, Rows)
    assert isinstance(mapped.x_train.reader.array, np.memmap)
    _assert_same(memory, mapped)
    x[150, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    for loading in ("memory", "stream"):
        with pytest.raises(DataError, match=r"x\.npy: 1 values are NaN or infinite .* the first at index 150$"):  # fmt: skip
            NumpyData.model_validate({**config, "loading": loading}).load(0, "binary")


# -------------------------------------------------------------------------- pipelines


class _Counting:
    """A reader that records every position it is asked for."""

    fallible = False
    finite = True
    dtype = np.dtype("float32")

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.seen = x, collections.Counter[int]()
        self.example_shape = x.shape[1:]

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.seen.update(positions.tolist())
        return self.x[positions], np.ones(len(positions), dtype=bool)


def _orders(x: Any, seed: int, first_epoch: int, epochs: int) -> list[list[int]]:
    from dltool.pipelines import TrainPipeline

    pipeline = TrainPipeline(x, np.arange(len(x)), len(x), seed, first_epoch)
    callback = pipeline.callback()
    orders = []
    for epoch in range(first_epoch, epochs):
        callback.on_epoch_begin(epoch)
        ((_, labels),) = pipeline.dataset.as_numpy_iterator()
        orders.append(labels.tolist())
    return orders


def test_streamed_epochs_have_the_in_memory_order_and_resume_it() -> None:
    x = np.arange(50, dtype="float32").reshape(-1, 1)
    rows = Rows.of(ArrayReader(x), 50)
    whole = _orders(x, seed=4, first_epoch=0, epochs=4)
    assert len({tuple(order) for order in whole}) == 4  # each epoch its own order
    assert _orders(rows, seed=4, first_epoch=0, epochs=4) == whole  # the same batches
    assert _orders(rows, seed=4, first_epoch=2, epochs=4) == whole[2:]  # a resumed epoch
    assert all(sorted(order) == list(range(50)) for order in whole)


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_execution", [1, 3, 32])
def test_every_streamed_epoch_reads_every_example_once(steps_per_execution: int) -> None:
    """103 rows in batches of 4 (the last one 3 rows), with calls of 1, 3 and 32 batches."""
    import keras

    from dltool.pipelines import TrainPipeline

    rows, epochs = 103, 3
    x = np.random.default_rng(0).normal(size=(rows, 3)).astype("float32")
    reader = _Counting(x)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", steps_per_execution=steps_per_execution)  # fmt: skip
    pipeline = TrainPipeline(Rows.of(reader, rows), (x[:, 0] > 0).astype("float32"), 4, 1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Your input ran out of data" would fail the test
        model.fit(
            pipeline.dataset,
            epochs=epochs,
            shuffle=False,
            callbacks=[pipeline.callback()],
            verbose=0,
        )
    assert reader.seen == collections.Counter(dict.fromkeys(range(rows), epochs))
    assert int(model.optimizer.iterations) == 26 * epochs


# ------------------------------------------------------------------------ whole runs


def _cnn(path: Path, **data: Any) -> dict[str, Any]:
    config = tiny_config(
        name="streamed",
        seed=7,
        model={
            "input_shape": [6, 8, 3],
            "layers": [
                {"type": "rescaling", "scale": "1/255"},
                {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"},
                {"type": "flatten"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        training={"loss": "sparse_categorical_crossentropy", "batch_size": 5, "epochs": 2},
    )
    config["data"] = {"source": "image_folder", "path": str(path), "image_size": [6, 8], "validation_split": 0.2, **data}  # fmt: skip
    return config


@pytest.mark.slow
def test_streamed_and_in_memory_runs_report_the_same_metrics(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = _images(tmp_path / "pictures", {"cat": 8, "dog": 7, "emu": 9})
    metrics = {}
    for loading in ("memory", "stream"):
        config = write_config(_cnn(root, loading=loading), name=f"{loading}.yaml")
        result = run_cli("train", config, "--runs-dir", tmp_path / loading)
        assert result.exit_code == 0, result.stderr + result.stdout
        (run,) = (tmp_path / loading).iterdir()
        info = json.loads((run / "run.json").read_text())
        assert info["data"]["loading"]["mode"] == loading
        metrics[loading] = json.loads((run / "metrics.json").read_text())
    assert metrics["memory"]["evaluated"] == metrics["stream"]["evaluated"]
    for split in ("train", "validation", "test"):
        for name, value in metrics["memory"][split].items():
            assert metrics["stream"][split][name] == pytest.approx(value, abs=1e-5), (split, name)


@pytest.mark.slow
def test_files_that_fail_while_streaming_are_reported_not_dropped(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("dltool.training.TRAIN_EVALUATED_ROWS", 5)  # a streamed train: sampled
    root = _images(tmp_path / "pictures", {"cat": 8, "dog": 7, "emu": 9})
    tests = _images(tmp_path / "tests", {"cat": 2, "dog": 2, "emu": 2})
    cuts = sorted([_truncated_jpeg(root / "emu"), _truncated_jpeg(tests / "dog")])
    config = write_config(_cnn(root, loading="stream", test_path=str(tests)))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr + result.stdout
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert "2 files failed to decode while training and were left out" in " ".join(result.stdout.split())  # fmt: skip
    lines = (run / "skipped.txt").read_text().splitlines()
    assert sorted(line.split(": not a readable image")[0] for line in lines) == [str(c) for c in cuts]  # fmt: skip
    assert info["data"]["skipped"] == {"count": 2, "examples": [str(cut) for cut in cuts]}
    assert info["examples"]["test"] == 7  # the split kept it ...
    predictions = (run / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 6  # ... but it has no prediction
    assert [row.split(",")[0] for row in predictions[1:]] == ["0", "1", "2", "3", "5", "6"]  # dog/cut.jpg was 5th  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluated"] == {
        "train": {"rows": 5, "of": info["examples"]["train"]},
        "validation": {
            "rows": info["examples"]["validation"],
            "of": info["examples"]["validation"],
        },
        "test": {"rows": 6, "of": 7},  # dog/cut.jpg counts nowhere
    }
    assert sum(metrics["test_classes"]["confusion_matrix"]["rows_true_columns_predicted"][1]) == 2


@pytest.mark.parametrize("count", [2, 8])  # decoded in the caller's thread, and on the pool
def test_memory_running_out_while_decoding_is_not_an_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """A good image whose decoding runs out of memory must not be listed as unreadable and
    left out (the run would end "completed" without it): the MemoryError goes on, and training
    reports it as out of memory."""
    from dltool import files
    from dltool.data.rows import ImageReader

    root = _images(tmp_path / "pictures", {"cat": count // 2, "dog": count - count // 2})
    reader = ImageReader(sorted(root.rglob("*.png")), (9, 7), "rgb", 3)

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("Unable to allocate 189 B for an array")

    monkeypatch.setattr(files, "read_pixels", no_memory)
    with pytest.raises(MemoryError):
        reader.read(np.arange(count))
    assert reader.failed == {}


@pytest.mark.slow
def test_a_folder_bigger_than_the_memory_limit_trains(write_config: Callable[..., Path], tmp_path: Path) -> None:  # fmt: skip
    """700 images decode to 2.2 GB of float32 pixels (512x512 RGB); the process may use 3.5 GB
    of address space in all (RLIMIT_AS, `ulimit -v`), of which TensorFlow maps about 1.5 GB at
    import, so the pixels alone cannot fit (at 3 GB the streamed run's own batches ran out).
    Streamed, the folder trains; in memory it is refused before any decoding, in one line,
    because dltool counts the address-space limit as memory it can have (before, the in-memory
    run decoded, then died with "internal error: MemoryError"). The process runs on 2 cores at
    most, so that the address space its threads' stacks take (TensorFlow's pools, the decoding
    pool) does not grow with the machine's cores."""
    root = tmp_path / "big"
    for name, colour in (("dark", 40), ("light", 200)):
        (root / name).mkdir(parents=True)
        for number in range(350):
            Image.new("RGB", (8, 8), (colour, number % 250, 7)).save(root / name / f"{number}.png")
    config = tiny_config(
        name="big",
        model={
            "input_shape": [512, 512, 3],
            "layers": [
                {"type": "max_pooling2d", "pool_size": 64},
                {"type": "flatten"},
                {"type": "rescaling", "scale": "1/255"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ],
        },
        training={"loss": "sparse_categorical_crossentropy", "batch_size": 32, "epochs": 1},
    )
    config["data"] = {"source": "image_folder", "path": str(root), "image_size": [512, 512]}
    limit = 3_500_000_000

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])

    def train(loading: str) -> subprocess.CompletedProcess[str]:
        path = write_config({**config, "data": {**config["data"], "loading": loading}}, name=f"{loading}.yaml")  # fmt: skip
        return subprocess.run(
            [str(DLTOOL), "train", str(path), "--runs-dir", str(tmp_path / loading)],
            capture_output=True, text=True, timeout=600, preexec_fn=limited,
        )  # fmt: skip

    streamed = train("stream")
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    (run,) = (tmp_path / "stream").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["examples"]["train"] == 560
    in_memory = train("memory")
    assert in_memory.returncode == 2, in_memory.stderr[-2000:]
    refused = re.fullmatch(
        rf"error: {re.escape(str(root))}: data\.loading: memory needs about 4\.4 GB for the decoded "
        r"images and ([\d,.]+) (bytes|MB|GB) is available \(stream them instead: data\.loading: stream or auto\)\n",
        in_memory.stderr,
    )
    assert refused, in_memory.stderr
    number, unit = float(refused[1].replace(",", "")), refused[2]
    available = number * {"bytes": 1, "MB": 1e6, "GB": 1e9}[unit]
    assert available < 700 * 512 * 512 * 3 * 4  # what the limit leaves: less than the pixels
    assert not (tmp_path / "memory").exists()


@pytest.mark.slow
def test_a_streamed_run_interrupted_mid_epoch_resumes_to_the_uninterrupted_result(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """SIGINT lands mid-epoch; the resumed run redoes that epoch in the same order."""
    import signal

    from test_faults import _start, _wait_for_epochs

    rng = np.random.default_rng(2)
    x = rng.random((1600, 3))
    rows = [f"{a:.5f},{b:.5f},{c:.5f},{'pass' if a + b > c else 'fail'}" for a, b, c in x]
    (tmp_path / "t.csv").write_text("\n".join(["age,hours,score,result", *rows]) + "\n")
    config = tiny_config(training={"epochs": 6, "batch_size": 16, "checkpoint_seconds": 0})
    config["data"] = {"source": "csv", "path": "t.csv", "target": "result", "loading": "stream", "validation_split": 0.2}  # fmt: skip
    path = write_config(config)
    process = _start(path, tmp_path / "runs")
    run = _wait_for_epochs(process, tmp_path / "runs", 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert json.loads((run / "run.json").read_text())["data"]["loading"]["mode"] == "stream"
    resumed = run_cli("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    straight = run_cli("train", path, "--runs-dir", tmp_path / "straight")
    assert straight.exit_code == 0, straight.stderr
    (reference,) = (tmp_path / "straight").iterdir()
    got, expected = (json.loads((r / "metrics.json").read_text()) for r in (run, reference))
    for split in ("train", "validation", "test"):
        for name, value in expected[split].items():
            assert got[split][name] == pytest.approx(value, abs=1e-4), (split, name)


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DLTOOL_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(DataError) as refused:
        _csv_config(_csv(tmp_path / "t.csv", 20), loading="stream").load(0, "multiclass")
    assert refused.value.lines == [
        f"{blocker / 'cache'}: cannot write the data cache (Not a directory); set DLTOOL_CACHE_DIR "
        "to a writable folder with room for the data, or use data.loading: memory"
    ]


def test_settings_that_cannot_stream_together_are_refused_at_validate(tmp_path: Path) -> None:
    from dltool.config import validate_config
    from dltool.errors import ConfigError

    images = tiny_config(model={"input_shape": [6, 8, 3], "layers": [{"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]})  # fmt: skip
    images["data"] = {"source": "image_folder", "path": "x", "image_size": [6, 8], "loading": "memory", "cache": "disk"}  # fmt: skip
    arrays = tiny_config()
    arrays["data"] = {"source": "numpy", "path": "a.npz", "loading": "stream"}
    for config, expected in (
        (images, "data: cache: disk reads the pixels from the cache a batch at a time"),
        (arrays, "data: loading: an .npz archive is read whole"),
    ):
        with pytest.raises(ConfigError) as refused:
            validate_config(config, source="exp.yaml")
        assert refused.value.lines[0].startswith(f"exp.yaml: {expected} (received"), (
            refused.value.lines
        )


def test_a_folder_too_big_for_memory_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    root = _images(tmp_path / "pictures", {"cat": 3, "dog": 3})
    monkeypatch.setattr("dltool.data.images.available_memory", lambda: 5000)
    with pytest.raises(DataError) as refused:
        _image_config(root, loading="memory").load(0, "multiclass")
    assert refused.value.lines == [
        f"{root}: data.loading: memory needs about 6,912 bytes for the decoded images and "
        "5,000 bytes is available (stream them instead: data.loading: stream or auto)"
    ]
    auto = _image_config(root, loading="auto").load(0, "multiclass")  # auto streams instead
    assert isinstance(auto.x_train, Rows)
    assert auto.notes["loading"]["why"] == (
        "3,456 bytes of pixels, at most 128.0 MB, but only 5,000 bytes of memory is available"
    )
