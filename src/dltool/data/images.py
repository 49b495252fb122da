"""Your own images, one sub-folder per class (``source: image_folder``).

Layout (class folders are searched recursively; names starting with "." are skipped)::

    path/
      cat/0001.png
      cat/more/0002.jpg
      dog/0003.png

Class names are the sub-folder names, sorted; a label is the index of its class
in that list (int64). ``test_path`` has the same layout; it may lack a class,
but a class folder that ``path`` does not have is an error. Without
``test_path``, :func:`dltool.data.load_dataset` holds out ``test_split`` of the
images (seeded, stratified).

Every image is converted to ``color_mode`` (Pillow mode ``L``: 1 channel, or
``RGB``: 3 channels) and, when its size differs, resized to ``image_size``
[height, width] with bilinear filtering (the aspect ratio is not kept), exactly
as ``dltool predict`` reads images. Pixels are float32 in 0..255, shape
(n, height, width, channels), in one array allocated once.

Before anything is decoded, a pre-scan checks every file: an image extension
(:data:`dltool.files.IMAGE_SUFFIXES`), not empty, Pillow can read its header, and a
PNG ends with its IEND chunk (a truncated PNG). Damage inside a file is found when it
is decoded, and reported with the rest. Files that fail are skipped and counted in ``Dataset.notes["skipped"]``
(the count and up to 5 example paths); with ``strict: true`` they are refused
with one line per file. This module prints nothing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from dltool.data import Dataset
from dltool.data.source import CHANNELS, ColorMode, DataPath, StreamingSource
from dltool.errors import DataError
from dltool.files import IMAGE_SUFFIXES, available_memory, image_problem
from dltool.layers import Pair
from dltool.messages import did_you_mean, size_in_bytes

if TYPE_CHECKING:  # NumPy and the readers load with the data, not with the schema (validate)
    import numpy as np

    from dltool.data.rows import ImageReader, Rows

MAX_BAD_SHOWN = 10  # strict mode: bad files listed one per line; the rest are counted
MAX_SKIPPED_EXAMPLES = 5  # paths kept in notes["skipped"]["examples"]
MAX_NAMES_SHOWN = 20  # class names listed in a message
LAYOUT = "path/CLASS/IMAGE, e.g. path/cat/1.png and path/dog/2.png"


@dataclass
class _Folder:
    """One scanned folder (``path`` or ``test_path``): usable files and what was wrong."""

    root: Path
    key: str  # data.path or data.test_path, for messages
    class_names: list[str] = field(default_factory=list)  # of data.path: label i = name i
    present: list[str] = field(default_factory=list)  # class folders found under root
    files: list[Path] = field(default_factory=list)  # usable, in label-then-path order
    labels: list[int] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)
    resized: int = 0  # images decoded so far whose size differed from image_size

    def record(self) -> dict[str, Any]:
        """The scan as JSON (see :meth:`from_record`)."""
        return {
            "root": str(self.root),
            "key": self.key,
            "class_names": self.class_names,
            "present": self.present,
            "files": [str(file) for file in self.files],
            "labels": self.labels,
            "bad": [[str(file), reason] for file, reason in self.bad],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> _Folder:
        return cls(
            Path(record["root"]),
            record["key"],
            list(record["class_names"]),
            list(record["present"]),
            [Path(file) for file in record["files"]],
            [int(label) for label in record["labels"]],
            [(Path(file), str(reason)) for file, reason in record["bad"]],
        )

    def empty_classes(self) -> list[str]:
        """Class folders under ``root`` without one usable image."""
        used = set(self.labels)
        return [name for name in self.present if self.class_names.index(name) not in used]


class ImageFolderData(StreamingSource):
    """Images in one sub-folder per class: ``path/cat/1.png``, ``path/dog/2.jpg``."""

    source: Literal["image_folder"]
    path: DataPath = Field(..., description="folder with one sub-folder per class")
    test_path: DataPath | None = Field(
        None, description="same layout, for testing (else test_split)"
    )
    image_size: Pair = Field((64, 64), description="[height, width] every image is resized to")
    color_mode: ColorMode = "rgb"
    strict: bool = Field(
        False, description="refuse unreadable files instead of skipping them (with a count)"
    )
    cache: Literal["none", "disk"] = Field(
        "none",
        description="keep the decoded pixels (uint8) in a cache folder (disk), reused by later "
        "runs on the same files and settings ($DLTOOL_CACHE_DIR, else ~/.cache/dltool)",
    )

    @model_validator(mode="after")
    def _cache_streams(self) -> ImageFolderData:
        if self.cache == "disk" and self.loading == "memory":
            raise ValueError(
                "cache: disk reads the pixels from the cache a batch at a time (received "
                "loading: memory with it; expected loading: auto or stream, or cache: none)"
            )
        return self

    def input_shape(self) -> list[int] | None:
        return [*self.image_size, CHANNELS[self.color_mode]]

    def ahead(self, task: str) -> dict[str, Any]:
        """The pre-scan, as JSON: run in a child while the parent imports TensorFlow."""
        folders, seconds = self._prescan(task)
        return {"scan": [folder.record() for folder in folders], "scan_s": seconds}

    def _prescan(self, task: str) -> tuple[list[_Folder], float]:
        """Every folder of the layout scanned (no file decoded), and the seconds it took."""
        layout = _layout(self, task)  # [(root, key, class folders found)]; the first is path
        names = layout[0][2]
        started = time.perf_counter()
        with _quiet():
            folders = [_scan(root, key, present, names) for root, key, present in layout]
        return folders, round(time.perf_counter() - started, 3)

    def load(self, seed: int, task: str) -> Dataset:
        """The images of an ``image_folder`` data config (``seed`` is unused: no randomness).

        Raises:
            DataError: one line per problem: a missing folder, too few class folders,
                an unknown test class, unusable files (``strict``), a class with no images.
        """
        import numpy as np

        from dltool import ahead

        done = ahead.part(ahead.key_of(self), ahead.SOURCE)  # the pre-scan, while TensorFlow loaded
        if done is not None:
            folders = [_Folder.from_record(record) for record in done["scan"]]
            prescan_s, during_import = float(done["scan_s"]), True
        else:
            folders, prescan_s = self._prescan(task)
            during_import = False
        names = folders[0].class_names
        _check(folders, strict=False)  # the layout; strict waits for the decode's verdicts
        size, channels = self.image_size, CHANNELS[self.color_mode]
        count = sum(len(folder.files) for folder in folders)
        pixel_bytes = count * size[0] * size[1] * channels * 4
        mode, why = self._mode(pixel_bytes)
        available = available_memory()
        short = available is not None and 2 * pixel_bytes > available  # pixels + TF's copy
        if mode == "memory" and short and self.loading == "auto":  # small, but memory is short
            mode, why = "stream", f"{why}, but only {size_in_bytes(available or 0)} of memory is available"  # fmt: skip
        if mode == "memory" and short:
            raise DataError(
                f"{self.path}: data.loading: memory needs about {size_in_bytes(2 * pixel_bytes)} "
                f"for the decoded images and {size_in_bytes(available or 0)} is available (stream "
                "them instead: data.loading: stream or auto)"
            )
        started = time.perf_counter()
        xs: list[np.ndarray | Rows]
        with _quiet():
            if mode == "disk cache":
                xs = [_cached(folder, size, self.color_mode, channels) for folder in folders]
            elif mode == "memory":
                xs = [_decoded(folder, size, self.color_mode, channels) for folder in folders]
            else:
                if self.strict:  # every file decoded once now, so that a refusal comes first
                    for folder in folders:
                        _decodes(folder, size, self.color_mode, channels)
                xs = [_streamed(folder, size, self.color_mode, channels) for folder in folders]
        decode_s = round(time.perf_counter() - started, 3)
        # Every unusable file at once: those the pre-scan found and those that failed to
        # decode (a truncated JPEG passes the pre-scan).
        _check(folders, self.strict)

        x_train, *test = xs
        labels = [np.asarray(folder.labels, dtype="int64") for folder in folders]
        dataset = Dataset(x_train=x_train, y_train=labels[0], class_names=names)
        dataset.notes = {"path": self.path, "images": len(x_train)}
        if test:
            dataset.x_test, dataset.y_test = test[0], labels[1]
            dataset.notes.update(test_path=self.test_path, test_images=len(dataset.x_test))
        dataset.notes.update(image_size=list(size), color_mode=self.color_mode)
        resized = sum(folder.resized for folder in folders)
        if resized:
            dataset.notes["resized"] = resized  # images of another size, resized (bilinear)
        dataset.notes["loading"] = {
            "mode": mode,
            "why": why,
            "prescan_s": prescan_s,
            **({"prescan_during_import": True} if during_import else {}),
            **({"decode_s": decode_s} if mode != "stream" or self.strict else {}),
        }
        bad = [(str(file), reason) for folder in folders for file, reason in folder.bad]
        if bad:
            examples = [file for file, _ in bad[:MAX_SKIPPED_EXAMPLES]]
            dataset.notes["skipped"] = {"count": len(bad), "examples": examples}
            dataset.skipped = [f"{file}: {reason}" for file, reason in bad]  # skipped.txt
        return dataset

    def _mode(self, pixel_bytes: int) -> tuple[str, str]:
        """How the pixels are held ("memory", "stream", "disk cache"), and why."""
        if self.cache == "disk":
            return "disk cache", "data.cache: disk"
        return self.loading_mode(pixel_bytes, "of pixels")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Pillow's warnings (e.g. palette transparency): this module prints nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------- structure


def _layout(config: ImageFolderData, task: str) -> list[tuple[Path, str, list[str]]]:
    """(root, config key, class folder names) of ``path`` and, if given, ``test_path``."""
    roots = [(Path(config.path), "data.path")]
    if config.test_path is not None:
        roots.append((Path(config.test_path), "data.test_path"))
    problems = [line for root, key in roots for line in _folder_problems(root, key)]
    if problems:
        raise DataError(*problems)
    layout = [(root, key, _class_folders(root)) for root, key in roots]
    root, _, names = layout[0]
    problems = _class_problems(root, names, task)
    for test_root, _, test_names in layout[1:]:
        problems += _test_class_problems(test_root, test_names, root, names)
    if problems:
        raise DataError(*problems)
    return layout


def _folder_problems(root: Path, key: str) -> list[str]:
    if not root.exists():
        return [f"{root}: {key}: no such folder (expected one sub-folder per class: {LAYOUT})"]
    if not root.is_dir():
        return [f"{root}: {key}: is a file, not a folder (expected one sub-folder per class: {LAYOUT})"]  # fmt: skip
    try:
        next(root.iterdir(), None)
    except OSError as error:
        return [f"{root}: {key}: cannot be read ({error.strerror or type(error).__name__})"]
    return []


def _class_folders(root: Path) -> list[str]:
    """Names of the visible sub-folders, sorted: the classes."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(count: int, what: str) -> str:
    """``"1 unusable file"``, ``"3 unusable files"``."""
    return f"{count} {what} file{'' if count == 1 else 's'}"


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"{shown}, ... ({len(names)} in all)" if more > 0 else shown


def _class_problems(root: Path, names: list[str], task: str) -> list[str]:
    if len(names) < 2:
        found = f"1 class folder ({names[0]})" if names else "no class folders"
        loose = sum(1 for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)  # fmt: skip
        beside = f" and {_files(loose, 'image')} directly in it" if loose else ""
        return [
            f"{root}: data.path: found {found}{beside}; expected at least 2 class folders "
            f"with the images inside, laid out as {LAYOUT}"
        ]
    if task == "binary" and len(names) != 2:
        return [
            f"{root}: data.path: binary_crossentropy needs exactly 2 classes, found "
            f"{len(names)}: {_listing(names)} (for more classes use loss: "
            f"sparse_categorical_crossentropy with one output unit per class)"
        ]
    return []


def _test_class_problems(test_root: Path, test_names: list[str], root: Path, names: list[str]) -> list[str]:  # fmt: skip
    if not test_names:
        return [
            f"{test_root}: data.test_path: no class folders (expected the layout of "
            f"data.path, with class folders among {_listing(names)})"
        ]
    return [
        f"{test_root / name}: data.test_path: class {name!r} is not a class of data.path "
        f"{root}{did_you_mean(name, names)} (its classes are {_listing(names)}; expected the "
        f"same class folder names)"
        for name in test_names
        if name not in names
    ]


# ---------------------------------------------------------------------- pre-scan


def _class_files(folder: Path) -> list[Path]:
    """Every visible file under a class folder, recursively, in a stable order."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )  # fmt: skip


def _scan(root: Path, key: str, present: list[str], class_names: list[str]) -> _Folder:
    """Check every file under each class folder of ``root``, several at once; nothing is decoded."""
    from dltool.data.rows import pool

    folder = _Folder(root, key, class_names, present)
    found = [(file, class_names.index(name)) for name in present for file in _class_files(root / name)]  # fmt: skip
    problems = pool().map(partial(image_problem, thorough=False), [file for file, _ in found])
    for (file, label), problem in zip(found, problems, strict=True):
        if problem is None:
            folder.files.append(file)
            folder.labels.append(label)
        else:
            folder.bad.append((file, problem))
    return folder


def _check(folders: list[_Folder], strict: bool) -> None:
    """Refuse unusable files (strict), classes without images, folders without images."""
    bad = [(file, reason) for folder in folders for file, reason in folder.bad]
    if strict and bad:
        lines = [f"{file}: {reason}" for file, reason in bad[:MAX_BAD_SHOWN]]
        if len(bad) > MAX_BAD_SHOWN:
            lines.append(f"and {_files(len(bad) - MAX_BAD_SHOWN, 'more unusable')}")
        lines.append(
            f"data.strict: {_files(len(bad), 'unusable')} refused (fix or remove them, "
            f"or set strict: false to skip them with a count)"
        )
        raise DataError(*lines)
    problems = []
    for folder in folders:
        skipped = f" ({_files(len(folder.bad), 'unusable')} skipped)" if folder.bad else ""
        if not folder.files:
            problems.append(
                f"{folder.root}: {folder.key}: no usable images at all{skipped} (expected "
                f"image files ({', '.join(IMAGE_SUFFIXES)}) laid out as {LAYOUT})"
            )
            continue
        for name in folder.empty_classes():
            in_class = sum(1 for file, _ in folder.bad if file.relative_to(folder.root).parts[0] == name)  # fmt: skip
            skipped = f" ({_files(in_class, 'unusable')} skipped)" if in_class else ""
            problems.append(
                f"{folder.root / name}: {folder.key}: class {name!r} has no usable images"
                f"{skipped} (expected image files ({', '.join(IMAGE_SUFFIXES)}) in this folder "
                f"or below)"
            )
    if problems:
        raise DataError(*problems)


# ------------------------------------------------------------------------ decode


def _reader(folder: _Folder, size: tuple[int, int], color_mode: str, channels: int) -> ImageReader:
    from dltool.data.rows import ImageReader

    return ImageReader(folder.files, size, color_mode, channels)


def _keep(folder: _Folder, reader: ImageReader, usable: np.ndarray) -> None:
    """Move the files that failed to decode to ``folder.bad``; keep the others' labels."""
    folder.resized += len(reader.resized)
    if usable.all():
        return
    folder.bad += [(folder.files[p], reason) for p, reason in sorted(reader.failed.items())]
    folder.files = [f for f, k in zip(folder.files, usable, strict=True) if k]
    folder.labels = [label for label, k in zip(folder.labels, usable, strict=True) if k]


def _decoded(folder: _Folder, size: tuple[int, int], color_mode: str, channels: int) -> np.ndarray:
    """Every scanned file decoded into one float32 array (several at once).

    A file that passed the pre-scan but fails to decode (e.g. a truncated JPEG, or
    damage inside a PNG: the pre-scan reads headers only) moves to ``folder.bad``.
    """
    from dltool.data.rows import Rows

    reader = _reader(folder, size, color_mode, channels)
    pixels, usable = Rows.of(reader, len(folder.files)).load()
    _keep(folder, reader, usable)
    return pixels if usable.all() else pixels[usable]  # rare: one copy of the usable rows


def _decodes(folder: _Folder, size: tuple[int, int], color_mode: str, channels: int) -> None:
    """Decode every scanned file, a chunk at a time, keeping nothing but the verdicts."""
    import numpy as np

    from dltool.data.rows import Rows

    reader = _reader(folder, size, color_mode, channels)
    usable = np.concatenate([ok for _, ok in Rows.of(reader, len(folder.files)).chunks()])
    _keep(folder, reader, usable)


def _streamed(folder: _Folder, size: tuple[int, int], color_mode: str, channels: int) -> Rows:
    """The scanned files as Rows: decoded batch by batch while training."""
    from dltool.data.rows import Rows

    return Rows.of(_reader(folder, size, color_mode, channels), len(folder.files))


def _cached(folder: _Folder, size: tuple[int, int], color_mode: str, channels: int) -> Rows:
    """The files' pixels from the disk cache (uint8, memory-mapped), decoded into it first
    if no earlier run did. The cache is keyed by every file's path, size and modification
    time and the decode settings; files that failed to decode are remembered with it."""
    import json

    import numpy as np

    from dltool.data.rows import ArrayReader, ImageReader, Rows, cache_key, cached

    key = cache_key(["images", list(size), color_mode], folder.files)
    entry = cached(f"images-{key}", lambda into: _fill_cache(into, folder, size, color_mode, channels))  # fmt: skip
    meta = json.loads((entry / "meta.json").read_text())
    usable = np.ones(len(folder.files), dtype=bool)
    reader = ImageReader(folder.files, size, color_mode, channels)
    reader.failed = {int(p): reason for p, reason in meta["failed"]}
    reader.resized = set(range(meta["resized"]))  # a count is all that is reported
    usable[list(reader.failed)] = False
    _keep(folder, reader, usable)
    pixels = np.load(entry / "pixels.npy", mmap_mode="r", allow_pickle=False)
    return Rows(ArrayReader(pixels), np.flatnonzero(usable))


def _fill_cache(entry: Path, folder: _Folder, size: tuple[int, int], color_mode: str, channels: int) -> None:  # fmt: skip
    import json

    import numpy as np

    from dltool.data.rows import CHUNK_BYTES, Rows
    from dltool.interrupts import raise_if_requested

    reader = _reader(folder, size, color_mode, channels)
    rows = Rows.of(reader, len(folder.files))
    target = np.lib.format.open_memmap(entry / "pixels.npy", mode="w+", dtype="uint8", shape=rows.shape)  # fmt: skip
    step = max(1, CHUNK_BYTES // max(1, int(np.prod(rows.shape[1:]))))  # uint8: a byte each
    for start in range(0, len(rows), step):
        pixels, _ = rows.read_stored(np.arange(start, min(start + step, len(rows))))
        target[start : start + len(pixels)] = pixels
        raise_if_requested()  # Ctrl-C: stop between chunks (the entry is removed)
    target.flush()
    del target
    meta = {"failed": sorted(reader.failed.items()), "resized": len(reader.resized)}
    (entry / "meta.json").write_text(json.dumps(meta))
