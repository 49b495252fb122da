"""Work done in a thread a step behind the caller: ``dltool predict`` formats and writes one
chunk of its output while the model predicts the next."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_END = object()  # what ends the writer's queue


class Behind:
    """Runs ``work(item)`` for each item :meth:`put`, in order, in a thread up to two items
    behind the caller. Its error is raised to the caller at the next :meth:`put` or when the
    ``with`` ends; a caller that fails stops it (items not yet done are dropped)."""

    def __init__(self, work: Callable[[Any], None]) -> None:
        self.work = work
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.busy = 0.0  # seconds the thread spent working
        self.thread = threading.Thread(target=self._run, name="dltool-write-behind", daemon=True)

    def __enter__(self) -> Behind:
        self.thread.start()
        return self

    def _run(self) -> None:
        while (item := self.queue.get()) is not _END:
            if self.error is not None:
                continue  # failed or stopped: drop the rest
            started = time.perf_counter()
            try:
                self.work(item)
            except BaseException as error:  # the caller's to raise
                self.error = error
            self.busy += time.perf_counter() - started

    def put(self, item: Any) -> None:
        self.raise_failure()
        self.queue.put(item)

    def raise_failure(self) -> None:
        if self.error is not None and not isinstance(self.error, _Stopped):
            raise self.error

    def __exit__(self, kind: type[BaseException] | None, *failure: object) -> None:
        if kind is not None and self.error is None:
            self.error = _Stopped()
        self.queue.put(_END)
        self.thread.join()
        if kind is None:
            self.raise_failure()


class _Stopped(Exception):
    """The caller failed: the writer drops what is left."""
