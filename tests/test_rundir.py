"""Run folders: unique, never overwritten, files replaced atomically, nothing written outside."""

from __future__ import annotations

import os
import resource
import signal
import stat
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dltool.errors import InputError, RunDirError
from dltool.rundir import RunDir, atomic_path, write_json, write_text

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


@pytest.fixture
def file_size_limit() -> Iterator[int]:
    """Writes past 64 KiB fail with EFBIG, the way a full disk fails a write halfway."""
    limit = 64 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize(
    ("write", "content"),
    [
        pytest.param(write_text, "x" * 200_000, id="write_text"),
        pytest.param(write_json, {"rows": ["x" * 1000] * 200}, id="write_json"),
    ],
)
def test_a_write_that_fails_halfway_keeps_the_old_file(
    tmp_path: Path, file_size_limit: int, write: Callable[[Path, Any], None], content: Any
) -> None:
    target = tmp_path / "metrics.json"
    write(target, {"old": True} if write is write_json else "old")
    old = target.read_bytes()
    with pytest.raises(RunDirError, match=rf"^{target}: cannot write: File too large$"):
        write(target, content)
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary left


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


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder outside the runs folder, and ``link`` pointing at it."""
    target = tmp_path / "elsewhere"
    (target / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(target)
    return target


@pytest.mark.parametrize(
    ("runs", "link"),
    [
        ("link", None),
        ("link/sub", "link"),
        ("link/sub/new/runs", "link"),
        ("real/../link/sub", "real/../link"),
    ],
)
def test_a_symbolic_link_anywhere_in_the_runs_dir_is_refused(
    tmp_path: Path, elsewhere: Path, runs: str, link: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--runs-dir link/sub wrote through link while only the last component was checked."""
    (tmp_path / "real").mkdir()
    monkeypatch.chdir(tmp_path)
    for base in (tmp_path, Path()):  # absolute, and relative to the working folder
        given = base / runs
        what = f"{base / link} is a symbolic link" if link else "is a symbolic link"
        with pytest.raises(InputError) as refused:
            RunDir.create(given, "exp")
        assert str(refused.value) == (
            f"{given}: {what} (to {elsewhere}); refusing to write through it "
            f"(pass --runs-dir {given.resolve()} to use that folder)"
        )
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["sub"]  # nothing written there


def test_links_in_the_home_or_working_folder_are_trusted(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home folder or project reached through a link (common on shared machines) works;
    links below it are still refused."""
    monkeypatch.setenv("HOME", str(tmp_path / "link"))
    run = RunDir.create(tmp_path / "link" / "sub" / "runs", "exp", WHEN)
    assert run.path.resolve() == elsewhere / "sub" / "runs" / "exp-20260102-030405"
    (elsewhere / "inner").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(InputError, match=r"link/inner: is a symbolic link"):
        RunDir.create(tmp_path / "link" / "inner", "exp")


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def test_run_files_get_the_umask_mode_not_0600(tmp_path: Path, umask: int) -> None:
    """mkstemp makes 0600 files; a run folder is meant to be shared like any other file."""
    run = RunDir.create(tmp_path, "exp")
    write_json(run.file("run.json"), {"status": "running"})
    with atomic_path(run.file("model.keras"), suffix=".keras") as temporary:
        temporary.write_bytes(b"a model")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.path.iterdir()}
    assert modes == {"run.json": 0o666 & ~umask, "model.keras": 0o666 & ~umask}
    os.umask(0o022)
    write_text(run.file("run.json"), "{}")  # replacing a file takes the new file's mode
    assert stat.S_IMODE(run.file("run.json").stat().st_mode) == 0o644
