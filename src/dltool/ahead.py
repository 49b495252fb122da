"""Reading the data files while TensorFlow is imported: a forked child does it meanwhile.

Importing TensorFlow and Keras keeps one core busy for 2-3 s (up to 10 s on a slow machine)
while the others wait. Before a run trains, every file of its data is read: an image folder's
pre-scan checks each image's header (:meth:`DataSource.ahead`), and the data fingerprint hashes
each source file (:func:`dltool.fingerprint.ahead_digests`). Neither needs TensorFlow, so
:func:`start_for` forks a child that does both, in that order, before the parent imports it,
sending each part as soon as it is done; the parent reads each part when it gets there
(:func:`part`), so that a folder's pre-scan (and any refusal of the folder) does not wait for
the hashing.

The parent does the work itself when there is no child to take it from: TensorFlow already
imported (the Python API in a process that trained before, a sweep worker's later trials,
the tests), other threads running (forking is only safe in a single-threaded process), no
``os.fork`` (Windows), a fork that failed, or a child that failed (its error is then the
parent's to report, as it would have been without a child). The child's output goes nowhere,
it ignores Ctrl-C (the parent decides), and it dies with its parent (Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dltool.data.source import DataSource

Work = list[tuple[str, Callable[[], dict[str, Any]]]]  # (part name, what computes it), in order
SOURCE = "source"  # the part DataSource.ahead computes (an image folder's pre-scan)
DIGESTS = "digests"  # the part fingerprint.ahead_digests computes


class _Child:
    """A forked child and what it has sent so far: one JSON line per part."""

    def __init__(self, pid: int, read: int) -> None:
        self.pid = pid
        self.pipe = os.fdopen(read, "rb")
        self.parts: dict[str, dict[str, Any]] = {}
        self.ended = False

    def part(self, name: str) -> dict[str, Any] | None:
        """The part ``name``, reading (and waiting) until it comes; None if the child ended
        without it (it failed: the parent does that work itself)."""
        while name not in self.parts and not self.ended:
            try:
                line = self.pipe.readline()
            except BaseException:  # a second Ctrl-C, SIGTERM: leave nothing behind
                self.stop()
                raise
            try:
                message = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                message = None
            if message is None:  # the end, or a child killed halfway through a part
                self.reap()
                break
            self.parts[message["part"]] = message["result"]
        return self.parts.get(name)

    def reap(self) -> None:
        if not self.ended:
            self.ended = True
            self.pipe.close()
            os.waitpid(self.pid, 0)

    def stop(self) -> None:
        if not self.ended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.reap()


_children: dict[str, _Child] = {}  # key: its child, until discard


def key_of(data: DataSource) -> str:
    """What identifies a data section's work: its settings."""
    return json.dumps(data.model_dump(mode="json"), sort_keys=True)


def start_for(data: DataSource, task: str) -> bool:
    """Fork a child that does ``data``'s own work ahead (the pre-scan of an image folder), then
    hashes its source files for the fingerprint. False when it cannot (see the module)."""
    from dltool.fingerprint import ahead_digests

    paths = data.source_paths()
    if not paths:
        return False
    return start(key_of(data), [(SOURCE, lambda: data.ahead(task)), (DIGESTS, lambda: ahead_digests(paths))])  # fmt: skip


def start(key: str, work: Work) -> bool:
    """Run each part of ``work`` in a forked child, in order; each (JSON) result is kept for
    :func:`part` as soon as it is done."""
    if key in _children or not _can_fork():
        return False
    try:
        read, write = os.pipe()
    except OSError:
        return False
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:  # a process limit, no memory: the parent does the work
        os.close(read)
        os.close(write)
        return False
    if pid == 0:  # the child: never returns (no Python shutdown, no buffers flushed twice)
        status = 1
        try:
            os.close(read)
            _quiet_child(parent)
            # A thread sends: a part bigger than the pipe's buffer (a 6,000-image scan is
            # 600 kB) waits there until the parent reads it, and the next part goes on meanwhile.
            outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
            sender = threading.Thread(target=_send, args=(write, outbox))
            sender.start()
            try:
                for name, compute in work:
                    outbox.put(json.dumps({"part": name, "result": compute()}).encode() + b"\n")
                status = 0
            finally:
                outbox.put(None)  # what was done still goes out whole
                sender.join()
        finally:
            os._exit(status)
    os.close(write)
    _children[key] = _Child(pid, read)
    return True


def _send(write: int, outbox: queue.SimpleQueue[bytes | None]) -> None:
    with os.fdopen(write, "wb") as pipe:
        while (message := outbox.get()) is not None:
            pipe.write(message)
            pipe.flush()


def _quiet_child(parent: int) -> None:
    """No output (the parent reports everything), no Ctrl-C (the parent decides), and death
    with the parent (Linux: a parent killed mid-import leaves no child hashing on)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(devnull, descriptor)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _can_fork() -> bool:
    """Only from a single-threaded process that has not imported TensorFlow (on Linux, native
    threads count too: OpenBLAS, gRPC)."""
    if not hasattr(os, "fork") or "tensorflow" in sys.modules or threading.active_count() != 1:
        return False
    tasks = Path("/proc/self/task")
    return not tasks.is_dir() or len(os.listdir(tasks)) == 1


def part(key: str, name: str) -> dict[str, Any] | None:
    """Part ``name`` of the work started for ``key`` (waiting for it), or None: no child, or it
    failed before sending it. Kept until :func:`discard`."""
    child = _children.get(key)
    return None if child is None else child.part(name)


def discard() -> None:
    """Stop and reap every child, and forget what they sent (the end of a run)."""
    for child in _children.values():
        child.stop()
    _children.clear()
