"""Run folders: created atomically, never overwritten, every file written atomically.

A run folder is ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]``. ``os.mkdir`` either
creates it or fails, so two processes starting the same name at the same moment
get different folders. Every file is written to a temporary file in the same
folder, flushed to disk and renamed over its final name, so a crash never
leaves a half-written file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import yaml

from dltool.errors import InputError, RunDirError

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"

RUN_FILES = (  # a completed run folder holds at least these
    "config.yaml",
    "run.json",
    "history.csv",
    "metrics.json",
    "predictions.csv",
    "model.keras",
    "summary.txt",
    "plots/learning_curves.png",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_path(final: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it over ``final``.

    ``suffix`` keeps an extension that writers insist on (Keras wants ``.keras``).
    On failure the temporary file is removed and ``final`` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix or ".tmp", dir=final.parent
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(final: Path, write: Callable[[IO[str]], Any]) -> None:
    """Write text to ``final`` atomically; ``write(handle)`` fills the open temporary file.

    Raises:
        RunDirError: the file could not be written (disk full, permissions).
    """
    try:
        with (
            atomic_path(final) as temporary,
            open(temporary, "w", encoding="utf-8", newline="") as handle,
        ):
            write(handle)
    except OSError as error:
        raise RunDirError(f"{final}: cannot write: {error.strerror or error}") from error


def write_text(final: Path, text: str) -> None:
    write_atomic(final, lambda handle: handle.write(text))


def write_json(final: Path, data: Any) -> None:
    write_text(final, json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n")


def write_yaml(final: Path, data: Any) -> None:
    write_text(final, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_csv(final: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def fill(handle: IO[str]) -> None:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

    write_atomic(final, fill)


class RunDir:
    """One run's folder and the files in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, runs_dir: Path, name: str, when: datetime | None = None) -> RunDir:
        """Make a new, empty run folder; never reuses an existing one.

        Raises:
            RunDirError: ``runs_dir`` cannot be created or written.
        """
        stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
        if runs_dir.is_symlink():
            raise InputError(
                f"{runs_dir}: is a symbolic link (to {os.readlink(runs_dir)}); refusing to write "
                f"through it (pass --runs-dir {runs_dir.resolve()} to use that folder)"
            )
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirError(
                f"{runs_dir}: cannot create the runs folder: {error.strerror}"
            ) from error
        base = f"{name}-{stamp}"
        for attempt in range(1, 10_000):
            candidate = runs_dir / (base if attempt == 1 else f"{base}-{attempt}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as error:
                raise RunDirError(
                    f"{candidate}: cannot create the run folder: {error.strerror}"
                ) from error
            return cls(candidate)
        raise RunDirError(f"{runs_dir}: more than 9,999 runs named {base!r}")

    def file(self, relative: str) -> Path:
        """The path of ``relative`` inside this run folder (never outside it)."""
        target = (self.path / relative).resolve()
        root = self.path.resolve()
        if os.path.commonpath([root, target]) != str(root):
            raise RunDirError(f"{relative}: refusing to write outside the run folder {self.path}")
        return target

    def read_json(self, relative: str) -> dict[str, Any]:
        with open(self.file(relative), encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
            return data

    def update_run_json(self, **fields: Any) -> dict[str, Any]:
        target = self.file("run.json")
        data = self.read_json("run.json") if target.exists() else {}
        data.update(fields)
        write_json(target, data)
        return data

    def missing_files(self) -> list[str]:
        return [name for name in RUN_FILES if not (self.path / name).is_file()]
