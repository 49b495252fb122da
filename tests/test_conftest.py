"""The guards in conftest.py: unmarked slow tests fail, and runs/ blames only the tests' runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import UnmarkedSlowTest, session_pids, slow_only, written_by_tests
from dltool import training  # before pytester's runs: they unload what they import (numpy)

INNER_TESTS = """
import contextlib
import multiprocessing
import subprocess

import pytest


def test_unmarked_starts_a_process():
    subprocess.run(["true"], check=True)


def test_unmarked_hides_the_refusal():
    with contextlib.suppress(Exception):
        subprocess.run(["true"], check=True)


def test_unmarked_starts_a_worker():
    multiprocessing.get_context("spawn").Process(target=print).start()


def test_unmarked_trains():
    from dltool import training

    training._train_and_finish(None, None, None, 0.0, first_epoch=0, history=[])


@pytest.fixture
def trained_elsewhere():
    subprocess.run(["true"], check=True)


def test_unmarked_with_a_fixture_that_starts_a_process(trained_elsewhere):
    pass


@pytest.mark.slow
def test_marked_may_start_a_process():
    subprocess.run(["true"], check=True)


def test_unmarked_plain():
    assert 1 + 1 == 2
"""


def test_unmarked_slow_tests_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_inprocess("-p", "conftest", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=4, errors=1)
    lines = result.stdout.str()
    for name, what in [
        ("test_unmarked_starts_a_process", "it starts a process (['true'])"),
        ("test_unmarked_hides_the_refusal", "it starts a process (['true'])"),
        ("test_unmarked_starts_a_worker", "it starts a process (multiprocessing)"),
        ("test_unmarked_trains", "it trains a model"),
        ("test_unmarked_with_a_fixture_that_starts_a_process", "it starts a process"),
    ]:
        assert f"test_inner.py::{name}: {what}" in lines, lines
    assert "mark it @pytest.mark.slow" in lines


def test_the_guard_wraps_the_real_training_entry() -> None:
    with slow_only(allowed=False) as refused, pytest.raises(UnmarkedSlowTest):
        training._train_and_finish(None, None, None, 0.0, first_epoch=0, history=[])  # type: ignore[arg-type]
    assert refused == ["it trains a model"]


def _run_folder(runs: Path, name: str, pid: int, host: str | None = None, file: str = "run.json") -> None:  # fmt: skip
    folder = runs / name
    (folder / "trial").mkdir(parents=True)
    where = folder / file if file != "trial/run.json" else folder / "trial" / "run.json"
    where.write_text(json.dumps({"pid": pid, "host": host or platform.node()}))


def test_runs_guard_blames_only_what_the_tests_wrote(tmp_path: Path) -> None:
    """Another process training into runs/ while the tests run is not the tests' doing."""
    ours, theirs = os.getpid(), os.getppid()
    runs = tmp_path / "runs"
    _run_folder(runs, "from-last-week", ours)  # there before the session: never blamed
    _run_folder(runs, "users-run", theirs)
    _run_folder(runs, "users-sweep", theirs, file="dltool.lock")
    _run_folder(runs, "same-pid-other-host", ours, host="elsewhere")
    _run_folder(runs, "tests-run", ours)
    _run_folder(runs, "tests-sweep", ours, file="dltool.lock")
    _run_folder(runs, "tests-trial", ours, file="trial/run.json")
    (runs / "half-made").mkdir()  # no run.json yet: nobody to blame
    blamed = written_by_tests(runs, ["from-last-week"], {ours})
    assert blamed == ["tests-run", "tests-sweep", "tests-trial"]
    assert written_by_tests(tmp_path / "missing", [], {ours}) == []


@pytest.mark.slow
def test_the_processes_tests_start_are_the_sessions() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert {os.getpid(), int(child.stdout)} <= session_pids()
