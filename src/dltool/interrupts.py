"""Ctrl-C and SIGTERM, handled where it is safe.

Raising KeyboardInterrupt from a signal handler is fragile inside TensorFlow: it can
land in a garbage-collection callback, where Python prints "Exception ignored" and
carries on as if nothing happened. So while Keras trains, the handler only records
the request; a callback stops training at the end of the current batch and the
interrupt is raised from dltool's own code once ``fit`` returns. Outside training
the handler raises at once, as Python's default does. A second Ctrl-C during
training raises at once too, for the impatient.
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
    in_fit: bool = False  # True while Keras trains: stop at the next batch end instead


REQUEST = _Request()


def _interrupt_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame: Any) -> None:
    if REQUEST.in_fit and REQUEST.signum is None:
        REQUEST.signum = signum  # StopOnSignal ends the epoch loop at the next batch
        return
    REQUEST.signum = None
    raise _interrupt_for(signum)


def raise_if_requested() -> None:
    """Raise the interrupt a signal asked for, if one did."""
    if REQUEST.signum is not None:
        signum, REQUEST.signum = REQUEST.signum, None
        raise _interrupt_for(signum)


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install dltool's SIGINT/SIGTERM handler (main thread only); restore the old ones after.

    Set explicitly: a process started in the background by a shell inherits an
    ignored SIGINT, and Python's default SIGTERM kills without cleaning up.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _handler)
    if hasattr(signal, "pthread_sigmask"):  # a parent may also have blocked them
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(previous))
    REQUEST.signum = None
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        REQUEST.signum, REQUEST.in_fit = None, False


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """While inside, a signal is only recorded; call :func:`raise_if_requested` after."""
    REQUEST.in_fit = True
    try:
        yield
    finally:
        REQUEST.in_fit = False
