"""Ctrl-C and SIGTERM, handled at safe points.

Raising KeyboardInterrupt from a signal handler is fragile with TensorFlow loaded:
it can land in a garbage-collection callback, where Python prints "Exception
ignored" and carries on as if nothing happened (seen in tests). So the first
signal only records the request: training stops at the end of the current batch,
and the interrupt is raised from dltool's own code at the next safe point (after
``fit``, after evaluation, between the runs of a sweep). A second signal raises at
once, for the impatient and for code that never reaches a safe point.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dltool.errors import Terminated


@dataclass
class _Request:
    signum: int | None = None  # the signal that asked us to stop, if any
    depth: int = 0  # nesting of handling_signals(): a sweep runs trainings inside


REQUEST = _Request()


def _interrupt_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame: Any) -> None:
    if REQUEST.signum is None:
        REQUEST.signum = signum  # raised at the next safe point
        return
    REQUEST.signum = None
    raise _interrupt_for(signum)


def stop_requested() -> bool:
    return REQUEST.signum is not None


def raise_if_requested() -> None:
    """A safe point: raise the interrupt a signal asked for, if one did."""
    if REQUEST.signum is not None:
        signum, REQUEST.signum = REQUEST.signum, None
        raise _interrupt_for(signum)


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install dltool's SIGINT/SIGTERM handler (main thread only); restore the old ones after.

    Set explicitly: a process started in the background by a shell inherits an
    ignored SIGINT (some launchers block it), and Python's default SIGTERM kills
    without cleaning up. A request still pending when an inner context ends is kept
    for the outer one's next safe point.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _handler)
    if hasattr(signal, "pthread_sigmask"):  # a parent may also have blocked them
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(previous))
    if REQUEST.depth == 0:
        REQUEST.signum = None
    REQUEST.depth += 1
    try:
        yield
    finally:
        REQUEST.depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if REQUEST.depth == 0:
            REQUEST.signum = None
