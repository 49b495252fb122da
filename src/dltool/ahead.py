"""Reading the data files while TensorFlow is imported: a forked child does it meanwhile.

Importing TensorFlow and Keras keeps one core busy for 2-3 s (up to 10 s on a slow machine)
while the others wait. Before a run trains, every file of its data is read: the data
fingerprint hashes each source file (:func:`dltool.fingerprint.hash_sources`), and an image
folder's pre-scan checks each image's header (:meth:`DataSource.ahead`). Neither needs
TensorFlow, so :func:`start` forks a child that does both before the parent imports it; the
parent takes the child's results when it gets there (:func:`result`), on the core the import
left idle.

The parent does the work itself when there is no child to take it from: TensorFlow already
imported (the Python API in a process that trained before, a sweep worker's later trials,
the tests), other threads running (forking is only safe in a single-threaded process), no
``os.fork`` (Windows), or a child that failed (its error is then the parent's to report, as
it would have been without a child).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dltool.data.source import DataSource

_children: dict[str, tuple[int, int]] = {}  # key: (pid, the read end of its pipe)
_results: dict[str, dict[str, Any] | None] = {}  # key: what its child sent, None if it failed


def key_of(data: DataSource) -> str:
    """What identifies a data section's work: its settings."""
    return json.dumps(data.model_dump(mode="json"), sort_keys=True)


def start_for(data: DataSource, task: str) -> bool:
    """Fork a child that fingerprints ``data``'s source files and does its own work ahead
    (the pre-scan of an image folder). False when it cannot (see the module)."""
    paths = data.source_paths()

    def work() -> dict[str, Any]:
        from dltool.fingerprint import hash_sources

        started = time.perf_counter()
        sources, files = hash_sources(paths)
        seconds = round(time.perf_counter() - started, 3)
        return {"digests": {"sources": sources, "files": files}, "hash_s": seconds, **data.ahead(task)}  # fmt: skip

    return bool(paths) and start(key_of(data), work)


def start(key: str, work: Callable[[], dict[str, Any]]) -> bool:
    """Run ``work()`` in a forked child, its (JSON) result kept for :func:`result`."""
    if key in _children or key in _results or not _can_fork():
        return False
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns (no Python shutdown, no buffers flushed twice)
        status = 1
        try:
            os.close(read)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about Ctrl-C
            payload = json.dumps(work()).encode()
            with os.fdopen(write, "wb") as pipe:
                pipe.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    _children[key] = (pid, read)
    return True


def _can_fork() -> bool:
    return hasattr(os, "fork") and "tensorflow" not in sys.modules and threading.active_count() == 1


def result(key: str) -> dict[str, Any] | None:
    """What the child started for ``key`` sent (waiting for it), or None: no child, or it
    failed. Kept until :func:`discard`, so that each part of a run reads its share."""
    if key not in _results:
        child = _children.pop(key, None)
        if child is None:
            return None
        pid, read = child
        with os.fdopen(read, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        _results[key] = json.loads(payload) if status == 0 and payload else None
    return _results[key]


def discard() -> None:
    """Stop and reap every child not taken yet, and forget every result (the end of a run)."""
    for pid, read in _children.values():
        os.close(read)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    _children.clear()
    _results.clear()
