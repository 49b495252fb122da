"""One writer per run or sweep folder: a second is refused at once; a dead holder blocks nothing."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_config
from dltool import locks
from dltool import sweep as sweeps
from dltool.errors import InputError
from dltool.rundir import STATUS_CRASHED, STATUS_RUNNING, RunDir

Cli = Callable[..., Any]
HOLDER = f"pid {os.getpid()} on host {platform.node()}"


def _running_run(tmp_path: Path) -> RunDir:
    run = RunDir.create(tmp_path / "runs", "locked")
    run.mark(STATUS_RUNNING, pid=os.getpid(), host=platform.node())
    return run


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = _running_run(tmp_path)
    with run.writing():
        with pytest.raises(InputError) as caught, run.writing():
            pass
        assert caught.value.lines == [
            f"{run.path}: the run is in use by {HOLDER} (one process writes a run folder "
            "at a time; wait for it to end or stop it, then try again)"
        ]
        assert run.status() == STATUS_RUNNING
    assert run.status() == STATUS_CRASHED  # run.json says running, but nobody holds it
    with run.writing():  # free again
        pass


def test_resume_of_a_run_being_written_is_refused_at_once(run_cli: Cli, tmp_path: Path) -> None:
    run = _running_run(tmp_path)
    with run.writing():
        before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
        result = run_cli("train", "--resume", run.path)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: {run.path}: the run is in use by {HOLDER} (one process writes a run folder "
        "at a time; wait for it to end or stop it, then try again)"
    )
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before


def test_resume_of_a_sweep_being_run_is_refused_at_once(run_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_config()))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", "grid": {"training.epochs": [1, 2]}}))  # fmt: skip
    with sweeps.open_sweep(path, tmp_path / "runs", resume=False) as directory:
        result = run_cli("sweep", directory.path, "--resume", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert f"{directory.path}: the sweep is in use by {HOLDER}" in result.stderr
    assert not (directory.path / "trials.csv").exists()
    assert not (directory.path / "runs").exists()


@pytest.mark.parametrize("planted", ["fifo", "symlink", "folder"])
def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, planted: str) -> None:
    lock = tmp_path / locks.LOCK
    if planted == "fifo":
        os.mkfifo(lock)
    elif planted == "symlink":
        lock.symlink_to(tmp_path / "elsewhere")
    else:
        lock.mkdir()
    with (
        pytest.raises(InputError, match=r"dltool\.lock: (not a regular file|cannot be opened)"),
        locks.hold(tmp_path, "run"),
    ):
        pass
    assert locks.held(tmp_path) is None
    assert not (tmp_path / "elsewhere").exists()


HOLDING_PROCESS = """
import sys, time
from pathlib import Path
from dltool import locks
with locks.hold(Path(sys.argv[1]), "run"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    run = _running_run(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDING_PROCESS, str(run.path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert locks.held(run.path) is True
        with pytest.raises(InputError, match=rf"in use by pid {holder.pid} on host"), run.writing():
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert locks.held(run.path) is False
    assert run.status() == STATUS_CRASHED
    with run.writing():
        pass
