"""One writer per folder: an exclusive ``flock`` on a lock file inside it.

A process that writes a run or sweep folder holds the lock for as long as it
writes; a second writer is refused at once, naming the holder's pid and host.
The kernel drops the lock when its holder exits in any way (``kill -9``, a
crash), so a dead holder never blocks ``--resume``. The lock file stays in the
folder; only the lock on it matters, and its text names the last holder.

No TensorFlow here: ``dltool runs`` asks whether a run's writer still holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dltool.errors import InputError

LOCK = "dltool.lock"  # inside the folder it guards (not a dot file: those are temporary)
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_HOLDER_BYTES = 4096


def _open(folder: Path, create: bool) -> int | None:
    """The lock file's descriptor; None when it is missing (and not ``create``d).

    Raises:
        InputError: the lock file is a link, a FIFO or anything but a regular file.
    """
    path = folder / LOCK
    try:
        fd = os.open(path, _OPEN_FLAGS | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if create:
            raise InputError(f"{folder}: folder not found") from None
        return None
    except OSError as error:  # ELOOP: a symbolic link planted as the lock file
        raise InputError(f"{path}: cannot be opened as a lock file ({error.strerror})") from error
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a regular file (expected dltool's lock file)")
    return fd


def _holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, MAX_HOLDER_BYTES, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _take(fd: int) -> bool:
    """Take the exclusive lock, allowing a moment for a reader's brief shared lock (held())."""
    for _ in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.025)
            continue
        return True
    return False


@contextlib.contextmanager
def hold(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock while the body writes it.

    Args:
        folder: an existing run or sweep folder.
        what: how a refusal names it, e.g. ``"run"`` or ``"sweep"``.

    Raises:
        InputError: another process holds it (exit 2), or the lock file is not ours.
    """
    fd = _open(folder, create=True)
    if fd is None:  # never: create=True raises instead
        raise InputError(f"{folder}: folder not found")
    try:
        if not _take(fd):
            holder = _holder(fd)
            raise InputError(
                f"{folder}: the {what} is in use by pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} (one process writes a {what} folder at a time; "
                f"wait for it to end or stop it, then try again)"
            )
        text = json.dumps({"pid": os.getpid(), "host": platform.node()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def held(folder: Path) -> bool | None:
    """Whether a process holds ``folder``'s lock now; None when it has no usable lock file.

    A lock this process holds through another descriptor counts as held.
    """
    try:
        fd = _open(folder, create=False)
    except InputError:
        return None
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
