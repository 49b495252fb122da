"""dltool.ahead: a forked child reads the data files while the parent imports TensorFlow.

The pytest process has TensorFlow loaded and threads running, where ahead never forks, so
these checks run in a fresh Python (no TensorFlow: about a second)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    from dltool import ahead

    # The child's result comes back as JSON, and is kept until discard.
    assert ahead.start("a", lambda: {"pid": os.getpid(), "values": [1, 2.5, "x"]})
    assert not ahead.start("a", lambda: {})  # one child per key
    got = ahead.result("a")
    assert got["values"] == [1, 2.5, "x"] and got["pid"] != os.getpid(), got
    assert ahead.result("a") is got
    ahead.discard()
    assert ahead.result("a") is None

    # A child that fails leaves the work to the parent: no result.
    def fail():
        raise OSError("unreadable")
    assert ahead.start("b", fail)
    assert ahead.result("b") is None

    # A child nobody takes is stopped and reaped at discard: no process left behind.
    assert ahead.start("c", lambda: time.sleep(60) or {})
    (pid, _), = ahead._children.values()
    ahead.discard()
    try:
        os.kill(pid, 0)
        raise AssertionError("child still there")
    except ProcessLookupError:
        pass

    # Never with another thread running (forking is only safe single-threaded) ...
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    assert not ahead.start("d", lambda: {})
    stop.set()
    thread.join()
    # ... nor once TensorFlow is imported.
    sys.modules["tensorflow"] = object()
    assert not ahead.start("e", lambda: {})
    print("ok")
    """
)


@pytest.mark.slow
def test_ahead_forks_a_child_and_falls_back_without_one() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.strip() == "ok"
    assert "unreadable" not in child.stderr  # the child's failure is not printed
