"""SHA-256 fingerprints of what a run trained on: its splits and its source files.

run.json's ``data_fingerprint`` records, for each split (``train``, ``validation``,
``test``), one SHA-256 of the exact examples and labels the run used (their bytes, dtype
and shape, in order), and for each source path of the ``data:`` section (a file, or a
folder of class folders) one SHA-256 of its contents. A folder's files are each listed
in the run folder's data files list (:data:`dltool.rundir.DATA_FILES`), so that a changed
image can be named. ``dltool reproduce`` and ``dltool continue`` check them before
training; ``dltool runs compare`` shows where two runs' data differ.

Streamed data is hashed without loading it whole: a table on disk a chunk at a time, an
image folder by its files' bytes (the decoded pixels follow from the files and the
recorded image size and color mode), so hashing costs one read of the files, not a decode.

``model_sha256`` in run.json is the hash of ``model.keras`` as training wrote it:
``predict`` and ``evaluate`` warn when the file no longer matches, and ``export``
refuses it (:func:`model_changed`).

No TensorFlow here: ``dltool runs compare`` reads fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dltool.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from dltool.data import Dataset
    from dltool.data.rows import Rows
    from dltool.data.source import DataSource
    from dltool.rundir import RunDir

FORMAT = 1  # bump when what a digest covers changes: older runs then read as "not comparable"
READ_BYTES = 1 << 20  # a file is hashed a MiB at a time
SPLIT_NAMES = ("train", "validation", "test")


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex), read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """The files of a data folder that count: every visible file inside its sub-folders
    (the class folders), in a stable order. Files beside the class folders are not data."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and len(path.relative_to(folder).parts) > 1
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


@dataclass
class Fingerprint:
    """A dataset's fingerprint: what run.json records, and each data file's digest."""

    splits: dict[str, str]  # split -> SHA-256 of its examples and labels
    sources: dict[str, str]  # configured path (file or folder) -> SHA-256 of its contents
    files: dict[str, str] = field(default_factory=dict)  # every file of a source folder
    seconds: float = 0.0
    # images streamed from their files are hashed by file (their pixels are not in memory):
    # such split digests are comparable only with others made the same way
    image_files: bool = False
    during_import: float | None = None  # seconds the files took, hashed while TF loaded

    def record(self) -> dict[str, Any]:
        """run.json's ``data_fingerprint``: ``seconds`` is what it cost the run here, and
        ``hashed_during_import_s`` what hashing the files took in :mod:`dltool.ahead`'s child."""
        during = (
            {} if self.during_import is None else {"hashed_during_import_s": self.during_import}
        )
        return {
            "format": FORMAT,
            **self.splits,
            "image_files": self.image_files,
            "sources": self.sources,
            "seconds": round(self.seconds, 3),
            **during,
        }


def fingerprint_dataset(dataset: Dataset, data: DataSource) -> Fingerprint:
    """The fingerprint of ``dataset`` (the splits exactly as training uses them) and of the
    files ``data`` reads.

    Raises:
        DataError: a source file cannot be read.
    """
    from dltool import ahead

    started = time.perf_counter()
    done = ahead.part(ahead.key_of(data), ahead.DIGESTS)  # hashed while TensorFlow loaded
    during_import = None
    if done is not None:
        sources, files, during_import = done["sources"], done["files"], float(done["seconds"])
    else:
        sources, files = hash_sources(data.source_paths())
    from dltool.data.rows import image_readers

    splits = {name: split_digest(x, y, files) for name, (x, y) in dataset.splits().items()}
    by_file = bool(image_readers(*(x for x, _ in dataset.splits().values())))
    return Fingerprint(
        splits, sources, files, time.perf_counter() - started, by_file, during_import
    )


def ahead_digests(paths: list[str]) -> dict[str, Any]:
    """:func:`hash_sources` as JSON, with its seconds: what :mod:`dltool.ahead`'s child sends
    (read back by :func:`fingerprint_dataset`)."""
    started = time.perf_counter()
    sources, files = hash_sources(paths)
    return {"sources": sources, "files": files, "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip


def hash_sources(paths: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({source path: digest}, {file of a source folder: digest}).

    A folder's digest covers each file's path inside the folder and its digest, so a
    renamed, added or removed image changes it as an edited one does.

    Raises:
        DataError: a source is missing or cannot be read (names it).
    """
    sources: dict[str, str] = {}
    files: dict[str, str] = {}
    for text in paths:
        path = Path(text)
        try:
            if path.is_dir():
                from dltool.data.rows import pool

                listed = folder_files(path)
                digest = hashlib.sha256()
                # several files at once: hashlib releases the GIL (6,000 PNGs: 1.5 s -> see README)
                for file, file_digest in zip(listed, pool().map(sha256_file, listed), strict=True):
                    files[str(file)] = file_digest
                    digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest}\n".encode())
                sources[text] = digest.hexdigest()
            else:
                sources[text] = sha256_file(path)
        except OSError as error:
            raise DataError(f"{path}: cannot read it to fingerprint the data: {error.strerror or error}") from error  # fmt: skip
    return sources, files


def split_digest(x: np.ndarray | Rows, y: np.ndarray, files: dict[str, str]) -> str:
    """One SHA-256 of a split's examples and labels: bytes, dtype and shape, in order.

    Examples on disk (:class:`dltool.data.rows.Rows`) are hashed a chunk at a time; images
    on disk by their files' digests (``files``, computed once), with the size and color mode
    that turn them into pixels.
    """
    import numpy as np

    from dltool.data.rows import ImageReader, Rows

    digest = hashlib.sha256(f"dltool data fingerprint {FORMAT}\n".encode())
    if isinstance(x, Rows) and isinstance(x.reader, ImageReader):
        reader = x.reader
        header = {"images": list(reader.size), "color_mode": reader.color_mode, "rows": len(x)}
        digest.update(json.dumps(header).encode())
        for position in x.index.tolist():
            file = reader.files[position]
            known = files.get(str(file))
            digest.update(bytes.fromhex(known if known is not None else sha256_file(file)))
    else:
        _update(digest, x)
    _update(digest, np.asarray(y))
    return digest.hexdigest()


def _update(digest: Any, x: np.ndarray | Rows) -> None:
    """Add an array's (or a table on disk's) dtype, shape and bytes to ``digest``."""
    import numpy as np

    dtype = x.dtype  # Rows: float32, as training reads them (the stored dtype may differ)
    digest.update(json.dumps({"dtype": np.dtype(dtype).str, "shape": list(x.shape)}).encode())
    for chunk in _chunks(x):
        digest.update(np.ascontiguousarray(chunk).data)


def _chunks(x: np.ndarray | Rows) -> Iterator[np.ndarray]:
    """``x`` in row chunks of at most the data readers' CHUNK_BYTES (a table on disk: read as
    float32, so that the same data streamed or in memory gives the same digest)."""
    import math

    from dltool.data.rows import CHUNK_BYTES, Rows

    if isinstance(x, Rows):
        for examples, _ in x.chunks():
            yield examples
        return
    per_chunk = max(1, CHUNK_BYTES // max(1, x.itemsize * math.prod(x.shape[1:])))
    for start in range(0, max(len(x), 1), per_chunk):
        yield x[start : start + per_chunk]


# ---------------------------------------------------------------------- checking


def check_run_data(run: RunDir) -> dict[str, Any] | None:
    """Refuse to train again on a run's data when a file it trained on is missing or changed.

    Returns the run's recorded ``data_fingerprint`` (None for a run from before fingerprints:
    nothing to check), for :func:`check_splits` once the data is loaded.

    Raises:
        DataError: a data file is missing or changed (names it).
    """
    from dltool.rundir import DATA_FILES

    recorded = run.info().get("data_fingerprint")
    if not isinstance(recorded, dict):
        return None
    check_sources(recorded, run.read_json(DATA_FILES))
    return recorded


def check_sources(recorded: dict[str, Any], recorded_files: dict[str, Any]) -> dict[str, str]:
    """Refuse when a source the run trained on is missing or changed; the current file digests.

    Args:
        recorded: run.json's ``data_fingerprint``.
        recorded_files: the run's data files list (``{}`` when it has none).

    Raises:
        DataError: a source (or a file in a source folder) is missing or changed; names it.
    """
    sources = recorded.get("sources")
    if not isinstance(sources, dict):
        return {}
    for text in sources:
        if not Path(text).exists():
            raise DataError(
                f"{text}: missing; the run trained on it (restore it, or train a new run)"
            )
    now, files = hash_sources(list(sources))
    for text, digest in sources.items():
        if now[text] == digest:
            continue
        changed = _changed_files(Path(text), recorded_files, files) if Path(text).is_dir() else []
        if not changed:  # a file, or a folder whose files the run did not list
            changed = [f"{text}: changed since the run trained on it (SHA-256 {str(digest)[:12]}... then, {now[text][:12]}... now)"]  # fmt: skip
        others = len(changed) - 1
        more = (
            f"; {others} more {'file differs' if others == 1 else 'files differ'}" if others else ""
        )
        raise DataError(f"{changed[0]}{more}; refusing to use different data")
    return files


def _changed_files(folder: Path, recorded: dict[str, Any], now: dict[str, str]) -> list[str]:
    """The files of ``folder`` that changed, were removed or were added, one line each."""
    inside = {k: v for k, v in recorded.items() if Path(k).is_relative_to(folder)}
    lines = [
        f"{file}: changed since the run trained on it (SHA-256 {str(then)[:12]}... then, {now[file][:12]}... now)"
        for file, then in sorted(inside.items())
        if file in now and now[file] != then
    ]
    lines += [f"{file}: missing; the run trained on it" for file in sorted(inside) if file not in now]  # fmt: skip
    added = sorted(file for file in now if file not in inside and Path(file).is_relative_to(folder))
    lines += [f"{file}: new; the run did not train on it" for file in added]
    return lines


def check_splits(recorded: dict[str, Any], current: Fingerprint, source: str) -> None:
    """Refuse when a split's examples differ from the recorded ones (files unchanged, but
    the data they make is not: a generated source, a new dltool, other settings).

    Raises:
        DataError: names the first split that differs.
    """
    if recorded.get("format") != FORMAT:
        return  # another fingerprint format: nothing to compare
    if recorded.get("image_files", False) != current.image_files:
        return  # an image folder streamed once and in memory once (loading: auto on less
        # memory): hashed by file vs by pixel; its files were checked (check_sources)
    for name in SPLIT_NAMES:
        then, now = recorded.get(name), current.splits.get(name)
        if then != now:
            raise DataError(
                f"{source}: data: the {name} split differs from the one the run trained on "
                f"(SHA-256 {str(then)[:12]}... then, {str(now)[:12]}... now); refusing to use "
                "different data"
            )


def differences(fingerprints: list[dict[str, Any] | None]) -> dict[str, list[str | None]]:
    """For ``dltool runs compare``: each part whose digest differs between the runs, with a
    short digest per run (None: not recorded)."""
    parts: dict[str, list[str | None]] = {}
    keys = [*SPLIT_NAMES, *sorted({s for f in fingerprints if f for s in _sources(f)})]
    for key in keys:
        values: list[str | None] = []
        for recorded in fingerprints:
            if not isinstance(recorded, dict):
                values.append(None)
                continue
            value = recorded.get(key) if key in SPLIT_NAMES else _sources(recorded).get(key)
            values.append(value[:12] if isinstance(value, str) else None)
        if len(set(values)) > 1:
            parts[f"data.{key}" if key in SPLIT_NAMES else f"data source {key}"] = values
    return parts


def _sources(recorded: dict[str, Any]) -> dict[str, Any]:
    sources = recorded.get("sources")
    return sources if isinstance(sources, dict) else {}


def sha256_path(path: Path) -> str:
    """:func:`sha256_file` of a file; for a folder (a SavedModel), the SHA-256 of its files'
    relative paths and hashes, in path order."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def model_changed(model_file: Path, info: dict[str, Any]) -> str | None:
    """Why ``model_file`` is not the model training saved, or None when it is (or when
    run.json, from a dltool before fingerprints, recorded no ``model_sha256``)."""
    recorded = info.get("model_sha256")
    if not isinstance(recorded, str):
        return None
    actual = sha256_file(model_file)
    if actual == recorded:
        return None
    return (
        f"{model_file}: changed since training (SHA-256 {actual[:12]}...; run.json's "
        f"model_sha256 is {recorded[:12]}...)"
    )
