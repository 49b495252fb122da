"""``source: image_folder`` and ``source: shapes``: images in, every refusal one clear line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import assert_stratified, tiny_config
from dltool.data import load_dataset
from dltool.data.images import ImageFolderData
from dltool.data.rows import Rows
from dltool.data.shapes import ShapesData
from dltool.errors import DataError

DLTOOL = Path(sys.executable).with_name("dltool")

COLOUR = (200, 100, 50)
GREY = 124  # Pillow's L of COLOUR: (200 * 299 + 100 * 587 + 50 * 114) / 1000 = 124.2
SUFFIXES = re.escape(".png, .jpg, .jpeg, .bmp, .gif, .webp, .tif, .tiff")

# ------------------------------------------------------------------------ helpers


def _png(path: Path, size: tuple[int, int] = (10, 12), colour: tuple[int, ...] = COLOUR) -> Path:
    """A uniform RGB image of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (10, 12)) -> Path:
    """``root/CLASS/0.png ...`` with ``counts[CLASS]`` images each; class i's red is 10 * i."""
    for index, (name, count) in enumerate(counts.items()):
        for number in range(count):
            _png(root / name / f"{number}.png", size, (10 * index, 100, 50))
    return root


def _config(root: Path, **settings: Any) -> ImageFolderData:
    return ImageFolderData.model_validate(
        {"source": "image_folder", "path": str(root), "image_size": [6, 8], **settings}
    )


def _problems(config: Any, task: str = "multiclass") -> list[str]:
    with pytest.raises(DataError) as caught:
        config.load(0, task)
    return caught.value.lines


def _assert_lines(lines: list[str], expected: list[str]) -> None:
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"


def _bad_files(classes: Path) -> list[Path]:
    """A corrupt PNG, an empty PNG and a stray text file in a class folder."""
    corrupt = classes / "x.png"
    corrupt.write_bytes(np.random.default_rng(0).bytes(64))
    empty = classes / "empty.png"
    empty.write_bytes(b"")
    notes = classes / "notes.txt"
    notes.write_text("where these came from", encoding="utf-8")
    return [empty, notes, corrupt]  # the pre-scan's (sorted) order


# ------------------------------------------------------------- image folder: happy


@pytest.mark.parametrize(
    ("settings", "mode"),
    [({}, "memory"), ({"loading": "stream"}, "stream"), ({"cache": "disk"}, "disk cache")],
)
def test_rgb_images_are_resized_and_labelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], mode: str
) -> None:
    """In memory, streamed or from the disk cache: the same pixels, labels and notes."""
    monkeypatch.setenv("DLTOOL_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "train", {"dog": 2, "cat": 3, "bird": 2})
    dataset = _config(root, **settings).load(0, "multiclass")

    assert dataset.class_names == ["bird", "cat", "dog"]  # sorted, not creation order
    assert dataset.x_train.shape == (7, 6, 8, 3)  # image_size is [height, width]
    assert dataset.x_train.dtype == np.float32
    np.testing.assert_array_equal(dataset.y_train, [0, 0, 1, 1, 1, 2, 2])
    assert dataset.y_train.dtype == np.int64
    assert isinstance(dataset.x_train, Rows) == (mode != "memory")
    pixels = dataset.x_train.load()[0] if isinstance(dataset.x_train, Rows) else dataset.x_train
    if mode == "stream":  # resizing is counted as it happens
        dataset.notes["resized"] = len(dataset.x_train.reader.resized)
    assert dataset.notes.pop("loading")["mode"] == mode
    reds = pixels[:, :, :, 0]  # uniform images stay uniform through bilinear resizing
    np.testing.assert_array_equal(reds.min(axis=(1, 2)), reds.max(axis=(1, 2)))
    np.testing.assert_array_equal(reds[:, 0, 0], [20, 20, 10, 10, 10, 0, 0])  # bird was 3rd
    np.testing.assert_array_equal(pixels[:, 0, 0, 1:], [[100, 50]] * 7)
    assert dataset.x_test is None
    assert dataset.notes == {
        "path": str(root),
        "images": 7,
        "image_size": [6, 8],
        "color_mode": "rgb",
        "resized": 7,
    }


def test_grayscale_has_one_channel_and_keeps_sizes(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 1, "b": 1}, size=(8, 6))  # already 6 high, 8 wide
    _png(root / "b" / "wide.png", (16, 3))
    dataset = _config(root, color_mode="grayscale").load(0, "multiclass")

    assert dataset.x_train.shape == (3, 6, 8, 1)
    assert dataset.x_train[2].min() == dataset.x_train[2].max() == GREY
    assert dataset.x_train.min() >= 0
    assert dataset.x_train.max() <= 255
    assert dataset.notes["resized"] == 1


def test_nested_images_count_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 1, "b": 1})
    _png(root / "a" / "more" / "deeper" / "1.png")
    _png(root / "a" / ".thumbnail.png")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01")
    _png(root / "b" / ".cache" / "1.png")
    _png(root / ".git" / "1.png")  # a hidden folder is not a class
    _png(root / "loose.png")  # beside the class folders: in no class
    dataset = _config(root).load(0, "multiclass")

    assert dataset.class_names == ["a", "b"]
    np.testing.assert_array_equal(dataset.y_train, [0, 0, 1])
    assert "skipped" not in dataset.notes


def test_test_path_uses_the_training_classes(tmp_path: Path) -> None:
    root = _folder(tmp_path / "train", {"cat": 2, "dog": 2, "emu": 2})
    test = _folder(tmp_path / "test", {"dog": 1, "emu": 2})  # no cat: allowed
    dataset = load_dataset(_config(root, test_path=str(test)), 0, "multiclass")

    assert dataset.class_names == ["cat", "dog", "emu"]
    assert dataset.x_train.shape == (6, 6, 8, 3)  # nothing held out: test_path is the test set
    assert dataset.x_test is not None
    assert dataset.x_test.shape == (3, 6, 8, 3)
    np.testing.assert_array_equal(dataset.y_test, [1, 2, 2])
    assert dataset.notes["test_path"] == str(test)
    assert dataset.notes["test_images"] == 3


def test_without_test_path_a_stratified_share_is_held_out(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 6, "b": 6})
    dataset = load_dataset(_config(root, test_split=0.5), 0, "multiclass")

    assert dataset.x_test is not None
    assert len(dataset.x_train) == len(dataset.x_test) == 6
    assert sorted(dataset.y_test.tolist()) == [0, 0, 0, 1, 1, 1]
    assert_stratified(dataset.y_test, np.concatenate([dataset.y_train, dataset.y_test]))


# ------------------------------------------------------------------------ pre-scan


def test_unusable_files_are_skipped_and_counted(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 2, "b": 2})
    bad = _bad_files(root / "b")
    dataset = _config(root).load(0, "multiclass")

    assert len(dataset.x_train) == 4
    np.testing.assert_array_equal(dataset.y_train, [0, 0, 1, 1])
    assert dataset.notes["skipped"] == {"count": 3, "examples": [str(p) for p in bad]}
    json.dumps(dataset.notes)  # kept in run.json


def test_skipped_examples_stop_at_five(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 1, "b": 1})
    for number in range(7):
        (root / "a" / f"{number}.txt").write_text("x", encoding="utf-8")
    skipped = _config(root).load(0, "multiclass").notes["skipped"]

    assert skipped["count"] == 7
    assert skipped["examples"] == [str(root / "a" / f"{n}.txt") for n in range(5)]
    every = _config(root).load(0, "multiclass").skipped  # all 7, for skipped.txt
    assert [line.split(": ")[0] for line in every] == [
        str(root / "a" / f"{n}.txt") for n in range(7)
    ]


def test_strict_refuses_unusable_files_one_line_each(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 2, "b": 2})
    empty, notes, corrupt = _bad_files(root / "b")
    lines = _problems(_config(root, strict=True))

    _assert_lines(
        lines,
        [
            re.escape(f"{empty}: empty file (0 bytes)"),
            re.escape(f"{notes}: not an image file (extension '.txt'; expected one of ")
            + SUFFIXES
            + r"\)",
            re.escape(f"{corrupt}: not a readable image (Pillow does not recognise its contents)"),
            re.escape(
                "data.strict: 3 unusable files refused (fix or remove them, "
                "or set strict: false to skip them with a count)"
            ),
        ],
    )


def test_strict_lists_ten_files_then_counts(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a": 1, "b": 1})
    for number in range(13):
        (root / "a" / f"{number:02d}.png").write_bytes(b"")
    lines = _problems(_config(root, strict=True))

    assert lines[:10] == [f"{root / 'a' / f'{n:02d}.png'}: empty file (0 bytes)" for n in range(10)]
    assert lines[10:12] == [
        "and 3 more unusable files",
        "data.strict: 13 unusable files refused (fix or remove them, "
        "or set strict: false to skip them with a count)",
    ]


def test_a_file_that_fails_to_decode_is_skipped_too(tmp_path: Path) -> None:
    """``verify`` does not decode a JPEG: a truncated one is caught while decoding."""
    root = _folder(tmp_path, {"a": 2, "b": 2})
    buffer = tmp_path / "whole.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer)
    truncated = root / "b" / "cut.jpg"
    truncated.write_bytes(buffer.read_bytes()[:400])

    dataset = _config(root).load(0, "multiclass")
    assert len(dataset.x_train) == 4
    np.testing.assert_array_equal(dataset.y_train, [0, 0, 1, 1])
    assert dataset.notes["skipped"] == {"count": 1, "examples": [str(truncated)]}
    _assert_lines(
        _problems(_config(root, strict=True)),
        [
            re.escape(f"{truncated}: not a readable image (OSError: ") + ".*",
            r"data\.strict: 1 unusable file refused .*",
        ],
    )


def test_the_pre_scan_reads_headers_and_a_png_end_and_decoding_finds_the_rest(
    tmp_path: Path,
) -> None:
    """The pre-scan no longer verifies whole files: a truncated PNG is still caught by its
    missing IEND chunk, and damage inside a PNG (a broken compressed stream) when decoding."""
    root = _folder(tmp_path, {"a": 2, "b": 2})
    whole = tmp_path / "whole.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(whole)
    data = whole.read_bytes()
    truncated = root / "a" / "cut.png"
    truncated.write_bytes(data[: len(data) // 2])
    damaged = root / "b" / "inside.png"
    middle = len(data) // 2
    damaged.write_bytes(data[:middle] + bytes(64) + data[middle + 64 :])
    (root / "b" / "trailing.png").write_bytes(data + b"\n")  # bytes after IEND: a usable PNG

    dataset = _config(root).load(0, "multiclass")
    assert len(dataset.x_train) == 5
    assert dataset.notes["skipped"]["count"] == 2
    _assert_lines(
        _problems(_config(root, strict=True)),
        [
            re.escape(
                f"{truncated}: not a readable image (a truncated PNG: it does not end with IEND)"
            ),
            re.escape(f"{damaged}: not a readable image (") + ".*",
            r"data\.strict: 2 unusable files refused .*",
        ],
    )


# -------------------------------------------------------------------------- errors


LAYOUT = re.escape("path/CLASS/IMAGE, e.g. path/cat/1.png and path/dog/2.png")


def _missing(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = tmp / "nowhere"
    return {"path": str(root)}, [
        re.escape(f"{root}: data.path: no such folder (expected one sub-folder per class: ")
        + LAYOUT
        + r"\)"
    ]


def _a_file(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _png(tmp / "one.png")
    return {"path": str(root)}, [re.escape(f"{root}: data.path: is a file, not a folder") + ".*"]


def _no_classes(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = tmp / "flat"
    _png(root / "1.png")
    _png(root / "2.png")
    return {"path": str(root)}, [
        re.escape(
            f"{root}: data.path: found no class folders and 2 image files directly in it; "
            f"expected at least 2 class folders with the images inside, laid out as "
        )
        + LAYOUT
    ]


def _one_class(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _folder(tmp / "one", {"cat": 2})
    return {"path": str(root)}, [
        re.escape(f"{root}: data.path: found 1 class folder (cat); expected at least 2 ") + ".*"
    ]


def _empty_class(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _folder(tmp / "train", {"cat": 2})
    (root / "dog").mkdir()
    (root / "emu").mkdir()
    (root / "emu" / "notes.txt").write_text("todo", encoding="utf-8")
    return {"path": str(root)}, [
        re.escape(f"{root / 'dog'}: data.path: class 'dog' has no usable images (expected ") + ".*",
        re.escape(
            f"{root / 'emu'}: data.path: class 'emu' has no usable images "
            f"(1 unusable file skipped) (expected image files ("
        )
        + SUFFIXES
        + re.escape(") in this folder or below)"),
    ]


def _no_images(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = tmp / "train"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        (root / name / "x.png").write_bytes(b"")
    return {"path": str(root)}, [
        re.escape(f"{root}: data.path: no usable images at all (2 unusable files skipped) ") + ".*"
    ]


def _unknown_test_class(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _folder(tmp / "train", {"cat": 1, "dog": 1})
    test = _folder(tmp / "test", {"cat": 1, "cow": 1, "dgo": 1})
    return {"path": str(root), "test_path": str(test)}, [
        re.escape(
            f"{test / name}: data.test_path: class {name!r} is not a class of data.path {root}"
            f"{hint} (its classes are cat, dog; expected the same class folder names)"
        )
        for name, hint in [("cow", ""), ("dgo", ", did you mean 'dog'?")]
    ]


def _missing_test_path(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _folder(tmp / "train", {"cat": 1, "dog": 1})
    return {"path": str(root), "test_path": str(tmp / "test")}, [
        re.escape(f"{tmp / 'test'}: data.test_path: no such folder") + ".*"
    ]


def _test_path_without_classes(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _folder(tmp / "train", {"cat": 1, "dog": 1})
    _png(tmp / "test" / "1.png")
    return {"path": str(root), "test_path": str(tmp / "test")}, [
        re.escape(
            f"{tmp / 'test'}: data.test_path: no class folders (expected the layout of "
            f"data.path, with class folders among cat, dog)"
        )
    ]


def _binary_with_three(tmp: Path) -> tuple[dict[str, Any], list[str]]:
    root = _folder(tmp / "train", {"a": 1, "b": 1, "c": 1})
    return {"path": str(root), "task": "binary"}, [
        re.escape(
            f"{root}: data.path: binary_crossentropy needs exactly 2 classes, found 3: a, b, c "
        )
        + ".*"
    ]


ERRORS: dict[str, Callable[[Path], tuple[dict[str, Any], list[str]]]] = {
    "path-missing": _missing,
    "path-is-a-file": _a_file,
    "no-class-folders": _no_classes,
    "one-class-folder": _one_class,
    "class-without-images": _empty_class,
    "no-usable-images": _no_images,
    "unknown-test-class": _unknown_test_class,
    "test-path-missing": _missing_test_path,
    "test-path-without-classes": _test_path_without_classes,
    "binary-with-three-classes": _binary_with_three,
}


@pytest.mark.parametrize("case", list(ERRORS.values()), ids=list(ERRORS))
def test_image_folder_errors(
    tmp_path: Path, case: Callable[[Path], tuple[dict[str, Any], list[str]]]
) -> None:
    settings, expected = case(tmp_path)
    task = settings.pop("task", "multiclass")
    root = Path(settings.pop("path"))
    _assert_lines(_problems(_config(root, **settings), task), expected)


# -------------------------------------------------------------------------- shapes


def _shapes(**settings: Any) -> ShapesData:
    return ShapesData.model_validate({"source": "shapes", "n_train": 30, "n_test": 9, **settings})


@pytest.mark.parametrize(("color_mode", "channels"), [("grayscale", 1), ("rgb", 3)])
def test_shapes_arrays(color_mode: str, channels: int) -> None:
    dataset = _shapes(image_size=12, color_mode=color_mode).load(5, "multiclass")

    assert dataset.x_train.shape == (30, 12, 12, channels)
    assert dataset.x_test is not None
    assert dataset.x_test.shape == (9, 12, 12, channels)
    for x in (dataset.x_train, dataset.x_test):
        assert x.dtype == np.float32
        assert x.min() >= 0
        assert x.max() <= 255
    assert dataset.y_train.dtype == np.int64
    assert dataset.class_names == ["circle", "square", "triangle"]


def test_shapes_are_deterministic_per_seed() -> None:
    config = _shapes(color_mode="rgb")
    first, again, other = (config.load(seed, "multiclass") for seed in (1, 1, 2))

    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_train, again.y_train)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_train, other.x_train)


def test_shapes_classes_are_balanced_in_config_order() -> None:
    dataset = _shapes(n_train=31, shapes=["triangle", "circle"]).load(0, "binary")

    assert dataset.class_names == ["triangle", "circle"]
    assert sorted(np.bincount(dataset.y_train).tolist()) == [15, 16]
    assert np.bincount(dataset.y_test).tolist() in ([5, 4], [4, 5])
    assert dataset.y_train[:10].tolist() != sorted(dataset.y_train[:10].tolist())  # shuffled


def test_shapes_are_drawn_bright_on_dark() -> None:
    x = _shapes(noise=0.0, image_size=32).load(0, "multiclass").x_train[..., 0]

    corners = x[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() <= 0.2 * 255 + 1e-3  # background: dark
    assert x.max(axis=(1, 2)).min() >= 0.55 * 255 - 1e-3  # every shape: bright
    areas = (x > x[:, :1, :1] + 1).mean(axis=(1, 2))
    assert areas.min() > 0.05  # a shape covers a visible share of every image
    assert areas.max() < 0.75  # and fits inside it


def test_shapes_noise_has_the_configured_spread() -> None:
    clean = _shapes(noise=0.0).load(3, "multiclass").x_train
    noisy = _shapes(noise=0.05).load(3, "multiclass").x_train
    inside = (clean > 20) & (clean < 235)  # away from clipping
    assert np.std((noisy - clean)[inside]) == pytest.approx(0.05 * 255, rel=0.1)


def test_shapes_binary_needs_two_shapes() -> None:
    _assert_lines(
        _problems(_shapes(), task="binary"),
        [
            re.escape(
                "data.shapes: binary_crossentropy needs exactly 2 classes, received 3 "
                "(circle, square, triangle); expected 2 shapes, or loss: "
                "sparse_categorical_crossentropy"
            )
        ],
    )


# ----------------------------------------------------------------------------- CLI


def _experiment(path: str, **data: Any) -> dict[str, Any]:
    """A tiny CNN on 8x8 RGB images in ``path`` (relative to the config file): 1 epoch."""
    config = tiny_config(
        name="pictures",
        model={
            "input_shape": [8, 8, 3],
            "layers": [
                {"type": "rescaling", "scale": "1/255"},
                {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"},
                {"type": "max_pooling2d", "pool_size": 2},
                {"type": "flatten"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        training={"loss": "sparse_categorical_crossentropy", "batch_size": 4},
    )
    config["data"] = {"source": "image_folder", "path": path, "image_size": [8, 8], **data}
    return config


@pytest.mark.slow
def test_cli_trains_a_cnn_on_an_image_folder(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("dltool.ahead._can_fork", lambda: False)  # here: no child (see below)
    root = _folder(tmp_path / "pictures", {"cat": 4, "dog": 4, "emu": 4})
    planted = "[bold red]notes\x1b]0;title\x07.txt"  # a file name is data: never markup
    (root / "dog" / planted).write_text("not an image", encoding="utf-8")
    config = write_config(_experiment("pictures", test_split=0.25))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")

    assert result.exit_code == 0, result.stderr + result.stdout
    assert "skipped 1" in result.stdout
    assert f"({root / 'dog'}/[bold red]notes]0;title.txt)" in result.stdout
    assert "\x1b" not in result.stdout
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["class_names"] == ["cat", "dog", "emu"]
    assert info["data"]["skipped"] == {"count": 1, "examples": [str(root / "dog" / planted)]}
    assert f"every one, with the reason: {run / 'skipped.txt'}" in " ".join(result.stdout.split())
    (line,) = (run / "skipped.txt").read_text().splitlines()
    assert line.startswith(f"{root / 'dog' / planted}: ")
    assert info["data"]["resized"] == 12
    predictions = (run / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 3  # header + a stratified quarter of 12 images
    assert "prescan_during_import" not in info["data"]["loading"]
    assert "hashed_during_import_s" not in info["data_fingerprint"]

    # A real process pre-scans and hashes the files in a child while TensorFlow loads
    # (dltool.ahead): the same files skipped, the same fingerprint.
    child = subprocess.run(
        [str(DLTOOL), "train", str(config), "--runs-dir", str(tmp_path / "process")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    (other,) = (tmp_path / "process").iterdir()
    ahead = json.loads((other / "run.json").read_text())
    assert ahead["data"]["loading"]["prescan_during_import"] is True
    assert ahead["data_fingerprint"]["hashed_during_import_s"] >= 0
    assert ahead["data"]["skipped"] == info["data"]["skipped"]
    for key in ("train", "test", "sources", "image_files"):
        assert ahead["data_fingerprint"][key] == info["data_fingerprint"][key], key
    assert (other / "skipped.txt").read_text() == (run / "skipped.txt").read_text()


def test_cli_refuses_a_folder_with_one_class(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = _folder(tmp_path / "pictures", {"cat": 3})
    result = run_cli(
        "train", write_config(_experiment("pictures")), "--runs-dir", tmp_path / "runs"
    )

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    _assert_lines(
        lines, [re.escape(f"error: {root}: data.path: found 1 class folder (cat); ") + ".*"]
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_a_real_process_refuses_a_bad_folder_as_quickly_and_plainly(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """The forked child's pre-scan fails on the folder (dltool.ahead): the parent reports the
    same one line, exit 2, and nothing is created."""
    root = _folder(tmp_path / "pictures", {"cat": 3})
    config = write_config(_experiment("pictures"))
    child = subprocess.run(
        [str(DLTOOL), "train", str(config), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert child.returncode == 2, child.stderr[-3000:]
    (line,) = child.stderr.splitlines()
    assert line.startswith(f"error: {root}: data.path: found 1 class folder (cat); ")
    assert not (tmp_path / "runs").exists()


def test_cli_strict_lists_each_unusable_file(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = _folder(tmp_path / "pictures", {"cat": 2, "dog": 2, "emu": 2})
    bad = _bad_files(root / "emu")
    config = write_config(_experiment("pictures", strict=True))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")

    assert result.exit_code == 2
    _assert_lines(
        result.stderr.splitlines(),
        [re.escape(f"error: {path}: ") + ".*" for path in bad]
        + [re.escape(f"error: {config}: data.strict: 3 unusable files refused ") + ".*"],
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_strict_lists_a_truncated_file_with_the_others(tmp_path: Path) -> None:
    """Every problem at once: the truncated JPEG (found while decoding) is listed with
    the files the pre-scan refused, not only after they are removed."""
    root = _folder(tmp_path, {"a": 2, "b": 2})
    empty, notes, corrupt = _bad_files(root / "b")
    buffer = tmp_path / "whole.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer)
    truncated = root / "a" / "cut.jpg"
    truncated.write_bytes(buffer.read_bytes()[:400])
    lines = _problems(_config(root, strict=True))
    assert sorted(line.split(": ")[0] for line in lines[:-1]) == sorted(
        str(path) for path in (empty, notes, corrupt, truncated)
    )
    assert lines[-1].startswith("data.strict: 4 unusable files refused")
