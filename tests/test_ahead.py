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
    import os, signal, sys, threading, time
    from dltool import ahead

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    # Each part comes back as JSON, in order, as soon as it is done, and is kept until discard;
    # what the child prints goes nowhere.
    def first():
        print("LEAK to stdout"); print("LEAK to stderr", file=sys.stderr)
        return {"pid": os.getpid(), "values": [1, 2.5, "x"]}
    assert ahead.start("a", [("first", first), ("second", lambda: {"n": 2})])
    assert not ahead.start("a", [])  # one child per key
    got = ahead.part("a", "first")
    assert got["values"] == [1, 2.5, "x"] and got["pid"] != os.getpid(), got
    assert ahead.part("a", "second") == {"n": 2}
    assert ahead.part("a", "first") is got
    assert ahead.part("a", "third") is None
    ahead.discard()
    assert ahead.part("a", "first") is None

    # A part bigger than the pipe's buffer does not hold the next one up: the child goes on
    # while the parent is busy (importing TensorFlow) and reads later.
    assert ahead.start("big", [("big", lambda: {"x": "y" * 1_000_000}), ("next", lambda: {"t": time.time()})])
    time.sleep(2)
    reading = time.time()
    assert len(ahead.part("big", "big")["x"]) == 1_000_000
    assert ahead.part("big", "next")["t"] < reading
    ahead.discard()

    # A part that fails ends the child: the parts before it still count, the rest are the
    # parent's to do.
    def fail():
        raise OSError("unreadable")
    assert ahead.start("b", [("ok", lambda: {}), ("bad", fail), ("after", lambda: {})])
    assert ahead.part("b", "bad") is None and ahead.part("b", "after") is None
    assert ahead.part("b", "ok") == {}
    ahead.discard()

    # A child nobody waits for is stopped and reaped at discard: no process left behind.
    assert ahead.start("c", [("slow", lambda: time.sleep(60) or {})])
    pid = ahead._children["c"].pid
    ahead.discard()
    assert gone(pid)

    # Interrupted while waiting (a second Ctrl-C raises): the child is stopped and reaped too.
    assert ahead.start("d", [("slow", lambda: time.sleep(60) or {})])
    pid = ahead._children["d"].pid
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(1)
    try:
        ahead.part("d", "slow")
        raise AssertionError("not interrupted")
    except KeyboardInterrupt:
        pass
    assert gone(pid)
    ahead.discard()

    # Never with another thread running (forking is only safe single-threaded) ...
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    assert not ahead.start("e", [("x", lambda: {})])
    stop.set()
    thread.join()
    # ... nor once TensorFlow is imported.
    sys.modules["tensorflow"] = object()
    assert not ahead.start("f", [("x", lambda: {})])
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
    assert "LEAK" not in child.stderr  # the child's output goes nowhere
    assert "unreadable" not in child.stderr  # nor its failure
