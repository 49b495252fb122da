"""Run folders: unique, never overwritten, files replaced atomically, nothing written outside."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from dltool.errors import RunDirError
from dltool.rundir import RunDir, atomic_path, write_text

WHEN = datetime(2026, 1, 2, 3, 4, 5)


def test_same_name_same_second_gets_new_folders(tmp_path: Path) -> None:
    names = [RunDir.create(tmp_path, "exp", WHEN).path.name for _ in range(3)]
    assert names == ["exp-20260102-030405", "exp-20260102-030405-2", "exp-20260102-030405-3"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_text(target, "old")

    def fail_midway() -> None:
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fail_midway()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_unwritable_runs_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunDirError, match="cannot create the runs folder"):
        RunDir.create(blocker / "runs", "exp")


@pytest.mark.parametrize("relative", ["../x.txt", "/etc/passwd", "plots/../../x"])
def test_no_file_outside_the_run_folder(tmp_path: Path, relative: str) -> None:
    run = RunDir.create(tmp_path, "exp")
    with pytest.raises(RunDirError, match="refusing to write outside the run folder"):
        run.file(relative)


def test_update_run_json_merges(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "exp")
    run.update_run_json(status="running", seed=1)
    assert run.update_run_json(status="completed") == {"status": "completed", "seed": 1}
