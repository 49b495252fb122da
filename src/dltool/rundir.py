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
import errno
import json
import os
import secrets
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
    temporary = _new_temporary(final, suffix or ".tmp")
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _new_temporary(final: Path, suffix: str) -> Path:
    """Create an empty, unique temporary file beside ``final``, with a normal file's mode.

    Not ``tempfile.mkstemp``: it creates files 0600, and ``os.replace`` would carry
    that over to every run file. ``os.open(..., 0o666)`` lets the umask decide, as
    for any file a program creates (0644 under the usual umask 022).
    """
    for _ in range(100):
        temporary = final.parent / f".{final.name}.{secrets.token_hex(4)}{suffix}"
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return temporary
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(final.parent))


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


def symbolic_link_in(runs_dir: Path) -> Path | None:
    """The first folder of ``runs_dir`` that is a symbolic link, or None.

    Every component the user controls is checked, not only the last: a link
    higher up (``--runs-dir link/sub``) would redirect the writes just as well.
    A relative ``runs_dir`` is checked from the working directory down. For an
    absolute one the part that is the working directory or the home folder (as
    the shell spells them, or resolved), or else the top-level system folder
    (``/tmp``, ``/home``; macOS links ``/tmp`` and ``/var`` to ``/private``),
    is the system's layout and trusted; every component below it is checked.
    """
    parts = runs_dir.parts
    trusted = 0
    if runs_dir.is_absolute():
        trusted = min(2, len(parts))  # "/" and the top-level folder
        if ".." not in parts:  # "home/.." would leave the trusted folder
            for anchor in _trusted_anchors():
                if parts[: len(anchor.parts)] == anchor.parts:
                    trusted = max(trusted, len(anchor.parts))
    for index in range(trusted + 1, len(parts) + 1):  # the first untrusted component on
        folder = Path(*parts[:index])
        if folder.is_symlink():
            return folder
        if not folder.exists():
            return None  # nothing below it exists yet; mkdir makes real folders
    return None


def _trusted_anchors() -> list[Path]:
    anchors = []
    for text in (os.environ.get("PWD"), os.environ.get("HOME")):
        if text and os.path.isabs(text):
            anchors.append(Path(text))
    with contextlib.suppress(OSError, RuntimeError):
        anchors += [Path.cwd(), Path.home().resolve()]
    return anchors


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
        link = symbolic_link_in(runs_dir)
        if link is not None:
            what = "is a symbolic link" if link == runs_dir else f"{link} is a symbolic link"
            raise InputError(
                f"{runs_dir}: {what} (to {os.readlink(link)}); refusing to write "
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
