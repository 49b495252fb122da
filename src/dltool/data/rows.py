"""Examples that stay on disk until a batch needs them: :class:`Rows`.

A data source whose examples would not fit in memory (an image folder of many
files, a big ``.npy`` or CSV table) gives :class:`Rows` instead of a NumPy array
as ``Dataset.x_*``. Rows behave like the array where the code before training
needs it: ``len``, ``shape``, ``ndim``, and indexing with a slice or an index
array (the seeded test/validation split, ``--smoke``) gives more Rows, lazily,
without reading anything. :mod:`dltool.pipelines` reads them a batch at a time
through :meth:`Rows.read`, in ``tf.data``.

A reader turns positions into examples:

- :class:`ImageReader`: image files, decoded and resized by Pillow exactly as the
  in-memory path and ``dltool predict`` do (:func:`dltool.files.read_image`),
  several files at once on a thread pool (Pillow releases the GIL while it decodes).
  A file that fails to decode only now (a damaged file that passed the pre-scan)
  gives zero pixels and ``usable=False``: the pipeline leaves it out of its batch,
  and the run reports it in ``skipped.txt``. None is dropped silently.
- :class:`ArrayReader`: a NumPy array or memory-mapped ``.npy`` file (the disk cache
  of decoded images, a big ``.npy``, a CSV converted in chunks).

No TensorFlow here: ``dltool data`` and the loaders use it.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dltool.backend import usable_cores

CHUNK_BYTES = 64_000_000  # examples read at once by whole-split passes (statistics, load)


class Reader(Protocol):
    """Turns positions into examples."""

    @property
    def example_shape(self) -> tuple[int, ...]: ...

    @property
    def fallible(self) -> bool:
        """Whether read() can report an example unusable."""
        ...

    @property
    def finite(self) -> bool:
        """Whether every value is finite by construction (no NaN check needed)."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """What read() gives: uint8 pixels, or the array's own type (float32 once in TensorFlow)."""
        ...

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(examples as ``dtype``, usable flags) at ``positions``, in that order."""
        ...


@dataclass(frozen=True, eq=False)
class Rows:
    """Some examples of a reader, in a fixed order: ``reader``'s ``index`` positions."""

    reader: Any  # a Reader
    index: np.ndarray

    @classmethod
    def of(cls, reader: Reader, count: int) -> Rows:
        return cls(reader, np.arange(count, dtype="int64"))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.reader.example_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.reader.example_shape)

    dtype = np.dtype("float32")

    @property
    def example_bytes(self) -> int:
        """Bytes of one example as float32, the form training reads."""
        return 4 * math.prod(self.reader.example_shape)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> Rows:
        """A subset, lazily: ``rows[:256]``, ``rows[index_array]``."""
        if isinstance(key, int | np.integer):
            raise TypeError("Rows are read with read(), not one by one")
        return Rows(self.reader, self.index[key])

    def read(self, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float32 examples, usable flags) of ``where`` (indices into these Rows)."""
        examples, usable = self.read_stored(where)
        with np.errstate(over="ignore"):  # beyond float32 becomes inf: the NaN check finds it
            return examples.astype("float32", copy=False), usable

    def read_stored(self, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(examples as the reader's ``dtype``, usable flags): what the input pipeline reads,
        so that uint8 pixels cross into TensorFlow at a quarter of float32's size."""
        return self.reader.read(self.index[np.asarray(where, dtype="int64")])

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every example in order, a chunk of at most CHUNK_BYTES at a time."""
        per_chunk = max(1, CHUNK_BYTES // max(1, self.example_bytes))
        for start in range(0, len(self), per_chunk):
            yield self.read(np.arange(start, min(start + per_chunk, len(self))))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """All examples in one float32 array, and their usable flags."""
        x = np.empty(self.shape, dtype="float32")
        usable = np.ones(len(self), dtype=bool)
        done = 0
        for pixels, ok in self.chunks():
            x[done : done + len(pixels)], usable[done : done + len(pixels)] = pixels, ok
            done += len(pixels)
        return x, usable


def chunks_of(x: np.ndarray | Rows) -> Iterator[np.ndarray]:
    """The usable examples of an array or Rows in memory-sized chunks (an array: itself)."""
    if isinstance(x, Rows):
        for examples, usable in x.chunks():
            yield examples[usable]
    else:
        yield x


def examples(x: np.ndarray | Rows) -> Iterator[np.ndarray | None]:
    """One example at a time, in order; None for one that cannot be read (a damaged file)."""
    if isinstance(x, Rows):
        for chunk, usable in x.chunks():
            yield from (example if ok else None for example, ok in zip(chunk, usable, strict=True))
    else:
        yield from x


def nonfinite_rows(x: np.ndarray | Rows, limit: int = 5) -> list[int]:
    """The first ``limit`` rows holding NaN or infinity (Rows: read a chunk at a time)."""
    if not isinstance(x, Rows):
        return np.unique(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[:, 0])[:limit].tolist()
    if x.reader.finite:
        return []
    found: list[int] = []
    start = 0
    for chunk, _ in x.chunks():
        bad = np.flatnonzero(~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1))
        found += (bad + start).tolist()
        start += len(chunk)
        if len(found) >= limit:
            break
    return found[:limit]


def usable(x: np.ndarray | Rows) -> np.ndarray:
    """Which rows could be read so far (False: a file that failed to decode)."""
    flags = np.ones(len(x), dtype=bool)
    if isinstance(x, Rows) and isinstance(x.reader, ImageReader):
        with x.reader._lock:
            failed = list(x.reader.failed)
        if failed:
            flags[np.isin(x.index, failed)] = False
    return flags


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the pool's threads are gone: make a new pool on first use."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def pool() -> ThreadPoolExecutor:
    """The process's decoding thread pool, made on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=usable_cores(), thread_name_prefix="dltool-decode"
            )
        return _POOL


def close_pool() -> None:
    """End the decoding pool's threads once their work is done (a later :func:`pool` makes a
    new one). Idle threads of a pool are not daemons: a process that leaves at once
    (cli.leave_now) closes the pool first rather than cut off work in progress."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True)
            _POOL = None


@dataclass(eq=False)
class ImageReader:
    """Image files, decoded on demand, several at once."""

    files: list[Path]
    size: tuple[int, int]
    color_mode: str
    channels: int
    fallible = True
    finite = True  # pixels 0..255
    failed: dict[int, str] = field(default_factory=dict)  # position -> reason, as found
    resized: set[int] = field(default_factory=set)  # positions of images of another size
    _lock: threading.Lock = field(default_factory=threading.Lock)

    dtype = np.dtype("uint8")

    def __post_init__(self) -> None:
        # Pillow's warnings (palette transparency and the like) while decoding during training:
        # silenced as the loaders silence them (catch_warnings is not thread-safe; this is).
        warnings.filterwarnings("ignore", module=r"PIL\.")

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (*self.size, self.channels)

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from dltool.files import read_pixels, unreadable_image

        pixels = np.zeros((len(positions), *self.example_shape), dtype="uint8")
        usable = np.ones(len(positions), dtype=bool)

        def decode(slot: int) -> None:
            position = int(positions[slot])
            try:
                pixels[slot], changed = read_pixels(
                    self.files[position], self.size, self.color_mode
                )
            except MemoryError:
                raise  # not the file's fault: a good image must not be listed as unreadable
            except Exception as error:  # Pillow raises various types for damaged files
                usable[slot] = False
                with self._lock:
                    self.failed.setdefault(position, unreadable_image(error))
                return
            if changed:
                with self._lock:
                    self.resized.add(position)

        if len(positions) < 4:
            for slot in range(len(positions)):
                decode(slot)
        else:
            list(pool().map(decode, range(len(positions))))
        return pixels, usable

    def failures(self) -> list[tuple[Path, str]]:
        """(path, reason) of every file that failed to decode so far, in file order."""
        with self._lock:
            return [(self.files[p], reason) for p, reason in sorted(self.failed.items())]


@dataclass(eq=False)
class ArrayReader:
    """Examples in an array, usually a memory-mapped ``.npy`` file (any numeric dtype)."""

    array: np.ndarray
    checked: bool = False  # every value already found finite (a converted CSV, a checked .npy)
    fallible = False

    @property
    def finite(self) -> bool:
        return self.checked or bool(np.issubdtype(self.array.dtype, np.integer))

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.array.dtype

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(positions, kind="stable")  # a memory map reads forwards fastest
        examples = np.empty((len(positions), *self.example_shape), dtype=self.array.dtype)
        examples[order] = self.array[positions[order]]
        return examples, np.ones(len(positions), dtype=bool)


def mark_checked(x: np.ndarray | Rows) -> None:
    """Say that every value of ``x`` was found finite (Rows over an array): not checked again."""
    if isinstance(x, Rows) and isinstance(x.reader, ArrayReader):
        x.reader.checked = True


def image_readers(*xs: Any) -> list[ImageReader]:
    """The image readers behind any of ``xs`` (Rows of the same folder share one), each once."""
    readers = {id(x.reader): x.reader for x in xs if isinstance(x, Rows)}
    return [reader for reader in readers.values() if isinstance(reader, ImageReader)]


def failures(*xs: Any) -> list[tuple[Path, str]]:
    """(path, reason) of the files that failed to decode while streaming, in any of ``xs``."""
    return [failure for reader in image_readers(*xs) for failure in reader.failures()]


CACHE_FORMAT = 1  # bump when what a cache entry holds changes


def cache_dir() -> Path:
    """Where decoded images (``data.cache: disk``) and streamed CSV tables are kept, keyed
    by their files: $DLTOOL_CACHE_DIR, else $XDG_CACHE_HOME/dltool, else ~/.cache/dltool."""
    if os.environ.get("DLTOOL_CACHE_DIR"):
        return Path(os.environ["DLTOOL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "dltool"


def cache_key(settings: Any, files: list[Path]) -> str:
    """A cache entry's name: the settings and every file's path, size and modification time."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps([CACHE_FORMAT, settings]).encode())
    for file in files:
        status = file.stat()
        key.update(f"\0{file}\0{status.st_size}\0{status.st_mtime_ns}".encode())
    return key.hexdigest()[:24]


def cached(name: str, fill: Callable[[Path], None]) -> Path:
    """The cache entry folder ``name``, filled first by ``fill(folder)`` when no earlier run did.

    ``fill`` writes into a fresh temporary folder that is renamed into place when it
    returns, so an entry is complete or absent; if ``fill`` raises (Ctrl-C included),
    nothing is left. Two runs filling the same entry at once both succeed; the first
    rename wins. Temporary folders older than a day (a killed run's) are removed.

    Raises:
        DataError: the cache folder cannot be written (one line, naming it).
    """
    import shutil
    import tempfile
    import time

    from dltool.errors import DataError

    root = cache_dir()
    entry = root / name
    if entry.is_dir():
        return entry
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".building-*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > STALE_BUILD_SECONDS:
                    shutil.rmtree(stale, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    except OSError as error:
        raise DataError(_cache_problem(root, error)) from error
    try:
        fill(building)
        with contextlib.suppress(OSError):  # another run filled it meanwhile: use that one
            building.rename(entry)
    except OSError as error:
        raise DataError(_cache_problem(root, error)) from error
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return entry


STALE_BUILD_SECONDS = 86_400


def _cache_problem(root: Path, error: OSError) -> str:
    return (
        f"{root}: cannot write the data cache ({error.strerror or type(error).__name__}); "
        "set DLTOOL_CACHE_DIR to a writable folder with room for the data, or use "
        "data.loading: memory"
    )
