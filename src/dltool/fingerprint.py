"""SHA-256 fingerprints of the files a run depends on.

``model_sha256`` in run.json is the hash of ``model.keras`` as training wrote it:
``predict`` and ``evaluate`` warn when the file no longer matches, and ``export``
refuses it (:func:`model_changed`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20  # read 1 MiB at a time: a model file is never held in memory twice


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


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
