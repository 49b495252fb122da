"""Ctrl-C and SIGTERM, handled at safe points.

Raising KeyboardInterrupt from a signal handler is fragile with TensorFlow loaded:
it can land in a garbage-collection callback, where Python prints "Exception
ignored" and carries on as if nothing happened (seen in tests). So the first
signal only records the request: training stops at the end of the current batch,
and the interrupt is raised from dltool's own code at the next safe point (after
``fit``, after evaluation, between the runs of a sweep). A second signal raises at
once, for the impatient and for code that never reaches a safe point; the request
stays recorded, so if that raise is swallowed the next safe point still stops.

Standard output that closes under us (``dltool train exp.yaml | head -1``) is
not a reason to stop: Python ignores SIGPIPE, and :func:`handling_signals` sends
the rest of the output to ``os.devnull``, so training carries on quietly and the
run ends as it would have (see :class:`_QuietWhenClosed`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from dltool.errors import ExitCode, Terminated


@dataclass
class _Request:
    signum: int | None = None  # the signal that asked us to stop, if any
    depth: int = 0  # nesting of handling_signals(): a sweep runs trainings inside
    deferring: bool = False  # inside deferred_signals(): record, never raise


REQUEST = _Request()


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a stop request by ``signum`` raises: Terminated for SIGTERM, else KeyboardInterrupt."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def signal_of(interrupt: KeyboardInterrupt) -> signal.Signals:
    """The signal an interrupt stands for: SIGTERM for Terminated, else SIGINT."""
    return signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT


@dataclass(frozen=True)
class Stop:
    """How dltool reports a stop by one signal."""

    word: str  # the first word of the line it prints
    label: str  # the signal as people call it
    exit_code: ExitCode  # 128 + the signal number, as shells report it


STOPS = {
    signal.SIGINT: Stop("interrupted", "Ctrl-C", ExitCode.INTERRUPTED),
    signal.SIGTERM: Stop("terminated", "SIGTERM", ExitCode.TERMINATED),
}


def stop_of(interrupt: KeyboardInterrupt) -> Stop:
    return STOPS[signal_of(interrupt)]


def _handler(signum: int, frame: Any) -> None:
    if REQUEST.signum is None or REQUEST.deferring:
        REQUEST.signum = REQUEST.signum or signum  # raised at the next safe point
        return
    # The request stays set: if this raise lands somewhere that swallows it (a
    # garbage-collection callback prints "Exception ignored" and carries on), the
    # next safe point raises it again instead of both signals being lost.
    raise interrupt_for(signum)


def stop_requested() -> bool:
    return REQUEST.signum is not None


def raise_if_requested() -> None:
    """A safe point: raise the interrupt a signal asked for, if one did."""
    if REQUEST.signum is not None:
        signum, REQUEST.signum = REQUEST.signum, None
        raise interrupt_for(signum)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Record signals without raising, for bookkeeping that must not be cut in half
    (marking run.json after an interrupt); they are raised at the next safe point."""
    previous, REQUEST.deferring = REQUEST.deferring, True
    try:
        yield
    finally:
        REQUEST.deferring = previous


class _QuietWhenClosed:
    """Standard output that swallows a closed pipe instead of failing the run.

    ``dltool train exp.yaml | head -1`` closes the pipe after one line. Python
    ignores SIGPIPE, so the next write raises BrokenPipeError, and rich turns that
    into ``SystemExit(1)``: the run would be marked failed with error "1". Instead
    the rest of the output goes to ``os.devnull`` (what Python's documentation on
    SIGPIPE recommends) and training carries on to its usual end and exit status.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard_the_rest()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard_the_rest()

    def _discard_the_rest(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # later writes and the exit flush succeed
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def stdout_may_close() -> Iterator[None]:
    """While the block runs, a standard output closed by its reader takes the rest of the
    output quietly (:class:`_QuietWhenClosed`): ``dltool runs | head -1`` is not an error."""
    original = sys.stdout
    if original is None or isinstance(original, _QuietWhenClosed):
        yield
        return
    sys.stdout = _QuietWhenClosed(original)
    try:
        yield
    finally:
        if isinstance(sys.stdout, _QuietWhenClosed):
            sys.stdout = original


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install dltool's SIGINT/SIGTERM handler (main thread only); restore the old ones after.

    Also makes a closed standard output harmless while it is installed (see
    :class:`_QuietWhenClosed`).

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
        with stdout_may_close():
            yield
    finally:
        REQUEST.depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if REQUEST.depth == 0:
            REQUEST.signum = None
