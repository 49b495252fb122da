"""Run folders: created atomically, never overwritten, every file written atomically.

A run folder is ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]``. ``os.mkdir`` either
creates it or fails, so two processes starting the same name at the same moment
get different folders. Every file is written to a temporary file in the same
folder, flushed to disk and renamed over its final name, so a crash never
leaves a half-written file where a complete one is expected.

This module owns the run folder: every file name, the folder-name pattern, opening
a run in a given state, its status and its checkpoint. Longer than 400 lines for that
reason; nothing else in dltool spells a run-folder file name.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import platform
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from dltool import locks
from dltool.errors import InputError, RunDirError
from dltool.files import FileRefused, read_limited

if TYPE_CHECKING:
    from dltool.config import ExperimentConfig

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
STATUS_CRASHED = "crashed"  # never written: "running" in run.json, but its process is gone
STATUS_PRUNED = (
    "pruned"  # a sweep stopped it early as hopeless; its folder is complete for what it trained
)

# Every file a run folder can hold; nothing else in dltool spells these names.
CONFIG = "config.yaml"  # the resolved experiment, every default filled in
RUN_JSON = "run.json"  # status, timings, seed, versions, what predict needs
HISTORY = "history.csv"  # one row per completed epoch
METRICS = "metrics.json"  # final metrics per split, per-class report
PREDICTIONS = "predictions.csv"  # one row per test example
MODEL = "model.keras"  # the trained model
BEST_MODEL = "best.keras"  # training.save_best
SUMMARY = "summary.txt"  # Keras' model summary
SKIPPED = "skipped.txt"  # unreadable files, with the reason
PROFILE = "profile.json"  # training.profile / --profile
LEARNING_CURVES = "plots/learning_curves.png"
CONFUSION_MATRIX = "plots/confusion_matrix.png"
REPORT = "report.html"  # everything above on one self-contained page (dltool report RUN)
MISTAKES = "mistakes.npz"  # the inputs of the worst test mistakes, for the report's thumbnails
TENSORBOARD = "tensorboard"  # training.tensorboard: Keras' TensorBoard event files
INTERNALS = "internals.json"  # training.record_internals: weights, dead ReLUs, gradients per epoch
INTERNALS_PICTURES = "internals.npz"  # ... and a CNN's first filters and feature maps
DATA_FILES = "data_files.json"  # SHA-256 of each file of a data folder (run.json has the folder's)
CHECKPOINT_DIR = "checkpoint"  # resumable state while a run is not completed
CHECKPOINT_POINTER = "checkpoint/latest.json"  # which checkpoint file, which epoch
PREDICTIONS_DIR = "predictions"  # dltool predict's default outputs
EVALUATIONS_DIR = "evaluations"  # dltool evaluate's outputs, one folder each holding:
EVALUATION_METRICS = METRICS  # the data file, example count, metrics and per-class report
EVALUATION_MATRIX = "confusion_matrix.json"  # rows are true classes, columns predicted
EVALUATION_MATRIX_PLOT = "confusion_matrix.png"
EXPORTS_DIR = "exports"  # dltool export's default outputs: exports/<format>/, each holding:
EXPORT_JSON = "export.json"  # format, check results, versions, input signature, what predict needs
EXPORT_CONFIG = CONFIG  # a copy of the run's config.yaml: an export folder is used on its own
EXPORT_MODELS = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}

RUN_FILES = (CONFIG, RUN_JSON, HISTORY, METRICS, PREDICTIONS, MODEL, SUMMARY, LEARNING_CURVES, REPORT)  # a completed run has at least these  # fmt: skip

MAX_JSON_BYTES = 10_000_000  # run.json and metrics.json are a few KB; a bigger one is not ours


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


def write_csv(final: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    def fill(handle: IO[str]) -> None:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

    write_atomic(final, fill)


def write_npz(final: Path, **arrays: Any) -> None:
    """NumPy arrays in one ``.npz`` file, written atomically (read back without pickle)."""
    import numpy as np

    try:
        with atomic_path(final, suffix=".npz") as temporary:
            np.savez_compressed(temporary, **arrays)
    except OSError as error:
        raise RunDirError(f"{final}: cannot write: {error.strerror or error}") from error


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


def folder_name(name: str, when: datetime | None = None) -> str:
    """A run folder's name without its ``-N`` suffix: ``<name>-<YYYYmmdd-HHMMSS>``."""
    return f"{name}-{(when or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def folders_named(runs_dir: Path, name: str) -> set[Path]:
    """The run folders under ``runs_dir`` made for the run name ``name``."""
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?")
    if not runs_dir.is_dir():
        return set()
    return {p for p in runs_dir.iterdir() if pattern.fullmatch(p.name)}


def claim_name(parent: Path, base: str, claim: Callable[[Path], bool], suffix: str = "") -> Path:
    """The first of ``parent/base``, ``parent/base-2``, ... that ``claim`` takes.

    ``claim(path)`` returns True once it has the name (``mkdir`` succeeded, or the
    name is free); the same numbering serves run folders and command outputs.

    Raises:
        RunDirError: 9,999 names are taken.
    """
    for attempt in range(1, 10_000):
        candidate = parent / ((base if attempt == 1 else f"{base}-{attempt}") + suffix)
        if claim(candidate):
            return candidate
    raise RunDirError(f"{parent}: more than 9,999 folders or files named {base!r}")


def alive(pid: Any, host: Any) -> bool:
    """Whether ``pid`` still runs; a run started on another host is assumed alive."""
    if not isinstance(pid, int) or isinstance(pid, bool) or (host and host != platform.node()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a number no pid can be
    return True


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object, or ``{}`` for a missing, broken, huge, special or absurdly nested file."""
    return json_object(path)[0]


def json_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """(the JSON object, None), or (``{}``, why the file was refused).

    A missing or broken file reads as ``{}`` with no reason (a crashed run may lack it);
    a FIFO, a device or a file over MAX_JSON_BYTES is refused, with the reason.
    """
    try:
        text = read_limited(path, MAX_JSON_BYTES, "a JSON file")
    except FileRefused as refused:
        return {}, (None if str(refused) == "file not found" else str(refused))
    try:
        data = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {}, None
    return (data if isinstance(data, dict) else {}), None


class RunDir:
    """One run's folder: the only code that knows its layout, its status and its checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, runs_dir: Path, name: str, when: datetime | None = None) -> RunDir:
        """Make a new, empty run folder; never reuses an existing one.

        Raises:
            InputError: ``runs_dir`` is or runs through a symbolic link.
            RunDirError: ``runs_dir`` cannot be created or written.
        """
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
        return cls(claim_name(runs_dir, folder_name(name, when), _make_folder))

    @classmethod
    def open(cls, folder: Path) -> RunDir:
        """An existing run folder, in any state.

        Raises:
            InputError: ``folder`` is not a run folder.
        """
        if not (folder / RUN_JSON).is_file():
            raise InputError(f"{folder}: not a dltool run folder (no {RUN_JSON})")
        return cls(folder)

    def file(self, relative: str) -> Path:
        """The path of ``relative`` inside this run folder (never outside it)."""
        target = (self.path / relative).resolve()
        root = self.path.resolve()
        if os.path.commonpath([root, target]) != str(root):
            raise RunDirError(f"{relative}: refusing to write outside the run folder {self.path}")
        return target

    # ------------------------------------------------------------------ run.json

    def read_json(self, relative: str) -> dict[str, Any]:
        """One of the run's JSON files, ``{}`` where it is missing or unreadable."""
        return read_json_object(self.path / relative)

    def info(self) -> dict[str, Any]:
        """run.json as written (``{}`` if unreadable)."""
        return self.read_json(RUN_JSON)

    def update_run_json(self, **fields: Any) -> dict[str, Any]:
        data = self.info()
        data.update(fields)
        write_json(self.file(RUN_JSON), data)
        return data

    def mark(self, status: str, **fields: Any) -> dict[str, Any]:
        """Record a status change (and the fields that go with it) in run.json."""
        return self.update_run_json(status=status, **fields)

    @staticmethod
    def status_of(info: dict[str, Any], folder: Path | None = None) -> str:
        """run.json's status, or ``crashed`` for a run whose process died while running.

        A run is running while its writer holds the folder's lock (see :mod:`dltool.locks`);
        a folder without a lock file falls back to whether run.json's pid is alive.
        """
        status = str(info.get("status", "unknown"))
        if status != STATUS_RUNNING:
            return status
        writing = locks.held(folder) if folder is not None else None
        if writing is None:
            writing = alive(info.get("pid"), info.get("host"))
        return STATUS_RUNNING if writing else STATUS_CRASHED

    def status(self) -> str:
        return self.status_of(self.info(), self.path)

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the run's lock while this process writes the folder.

        Raises:
            InputError: another process is writing it (names its pid and host).
        """
        return locks.hold(self.path, "run")

    def missing_files(self) -> list[str]:
        return [name for name in RUN_FILES if not (self.path / name).is_file()]

    def require_completed(self) -> dict[str, Any]:
        """run.json of a completed run with its model, for predict and evaluate.

        Raises:
            InputError: not completed, or the model or config is missing.
        """
        if not (self.path / CONFIG).is_file():
            raise InputError(
                f"{self.path}: not a dltool run folder (expected {RUN_JSON} and {CONFIG} in it)"
            )
        info = self.info()
        if not info:
            raise InputError(f"{self.path / RUN_JSON}: unreadable (not a JSON object)")
        status = info.get("status")
        if status != STATUS_COMPLETED:
            detail = f": {info['error']}" if info.get("error") else ""
            raise InputError(
                f"{self.path}: the run is {status!r}{detail}; only completed runs can be used"
            )
        if not (self.path / MODEL).is_file():
            raise InputError(f"{self.path}: {MODEL} is missing (the run folder is incomplete)")
        return info

    def config(self) -> ExperimentConfig:
        """The run's resolved config.yaml, validated.

        Raises:
            InputError: it no longer validates (one line per problem).
        """
        from dltool.config import load_config
        from dltool.errors import ConfigError

        try:
            return load_config(self.path / CONFIG)
        except ConfigError as error:
            raise InputError(*error.lines) from error

    def recorded_backend(self) -> str:
        """The Keras backend the run was trained with (its config.yaml), to resume on it."""
        from dltool.yamlio import YamlProblem, read_yaml_mapping

        try:
            training = read_yaml_mapping(self.path / CONFIG).get("training")
        except YamlProblem:
            return "tensorflow"  # resuming reports the unreadable file
        backend = training.get("backend") if isinstance(training, dict) else None
        return backend if isinstance(backend, str) else "tensorflow"

    # ---------------------------------------------------------------- checkpoint

    def checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint a run can resume from (its pointer file), if complete."""
        data = self.read_json(CHECKPOINT_POINTER)
        name = data.get("file")
        if not isinstance(name, str) or not (self.path / CHECKPOINT_DIR / name).is_file():
            return None
        return {**data, "path": self.path / CHECKPOINT_DIR / name}

    def require_resumable(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(run.json, checkpoint) of a run that ``--resume`` can continue.

        Call it holding :meth:`writing`: then no other process is writing the run, and
        a run.json that still says ``running`` is a crashed run's.

        Raises:
            InputError: completed, or stopped before its first checkpoint.
        """
        info = self.info()
        if info.get("status") == STATUS_COMPLETED:
            raise InputError(f"{self.path}: the run is already completed; nothing to resume")
        latest = self.checkpoint()
        if latest is None:
            raise InputError(
                f"{self.path}: no checkpoint to resume from (it stopped before its first one); train it again"
            )
        return info, latest

    def write_checkpoint(
        self,
        save: Callable[[Path], None],
        epoch: int,
        fingerprint: str,
        history: list[Any],
        pointed: Callable[[], None],
    ) -> None:
        """Save epoch ``epoch`` with ``save(path)``, then point the checkpoint at it.

        The pointer is written only once the file is complete, so it never names a
        missing or half-written file. Pointing at it, ``pointed()`` (the caller's
        bookkeeping) and removing the older file happen with signals deferred: a
        signal cannot leave the caller believing in an older epoch than the pointer.
        """
        from dltool.interrupts import deferred_signals

        folder = self.file(CHECKPOINT_DIR)
        name = f"epoch-{epoch:04d}.keras"
        save(folder / name)  # a Ctrl-C here abandons the new file only
        with deferred_signals():
            pointer = {"epoch": epoch, "file": name, "fingerprint": fingerprint, "history": history}
            write_json(self.file(CHECKPOINT_POINTER), pointer)
            pointed()
            for old in folder.glob("epoch-*.keras"):
                if old.name != name:
                    old.unlink(missing_ok=True)

    def remove_checkpoint(self) -> None:
        """A completed run has nothing to resume."""
        shutil.rmtree(self.file(CHECKPOINT_DIR), ignore_errors=True)

    def new_output(self, kind: str, suffix: str = "") -> Path:
        """An unused ``RUN/<kind>/<time>[-N][suffix]`` for a command's output (not created)."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")

        def free(candidate: Path) -> bool:
            return not candidate.exists() and not candidate.with_suffix("").exists()

        return claim_name(self.path / kind, stamp, free, suffix)


def _make_folder(candidate: Path) -> bool:
    try:
        candidate.mkdir()
    except FileExistsError:
        return False
    except OSError as error:
        raise RunDirError(f"{candidate}: cannot create the run folder: {error.strerror}") from error
    return True
