"""files.py: only regular files are opened, dltool's own files have a size limit, data files
that cannot fit in memory are refused before reading, and one resolver owns config paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import tiny_config
from dltool import files
from dltool.data import load_dataset
from dltool.data.tabular import CsvData, NumpyData
from dltool.errors import DataError, InputError
from dltool.files import FileRefused, open_regular, read_limited, resolve_path
from dltool.yamlio import MAX_FILE_BYTES

Cli = Callable[..., Any]


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A FIFO blocks open() and read() for ever: fail after 20 s instead of hanging the suite."""

    def timeout(*_: Any) -> None:
        raise TimeoutError("blocked on a FIFO or device")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (``truncate``)."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


@pytest.mark.parametrize("kind", ["fifo", "device", "link-to-device"])
def test_only_regular_files_are_opened(tmp_path: Path, fifo: Path, kind: str) -> None:
    path = {"fifo": fifo, "device": Path("/dev/zero"), "link-to-device": tmp_path / "zero"}[kind]
    if kind == "link-to-device":
        path.symlink_to("/dev/zero")
    with pytest.raises(FileRefused, match=r"^not a regular file$"):
        open_regular(path)
    with pytest.raises(FileRefused, match=r"^not a regular file$"):
        read_limited(path, 1000)


def test_missing_folder_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match=r"^file not found$"):
        open_regular(tmp_path / "gone")
    with pytest.raises(FileRefused, match=r"^is a folder, not a YAML file$"):
        open_regular(tmp_path, "a YAML file")
    big = _sparse(tmp_path / "big", 5000)
    with pytest.raises(FileRefused, match=r"^file is 5,000 bytes; the limit is 4,999$"):
        read_limited(big, 4999)
    assert read_limited(big, 5000) == bytes(5000)


def test_resolve_path_is_relative_to_the_config_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert resolve_path("data.csv", Path("/configs")) == Path("/configs/data.csv")
    assert resolve_path("~/data.csv", Path("/configs")) == Path("/home/someone/data.csv")
    assert resolve_path("/abs/data.csv", Path("/configs")) == Path("/abs/data.csv")


def test_extends_and_data_paths_expand_home_alike(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`extends: ~/base.yaml` was looked for in CONFIG_FOLDER/~/base.yaml; `data.path: ~/x`
    was expanded. One resolver now treats both alike."""
    import yaml

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (home / "t.csv").write_text("a,y\n1,0\n2,1\n")
    base = tiny_config(model={"input_shape": [1]})
    base["data"] = {"source": "csv", "path": "~/t.csv", "target": "y"}
    (home / "base.yaml").write_text(yaml.safe_dump(base))
    child = tmp_path / "child.yaml"
    child.write_text("extends: ~/base.yaml\ntraining: {epochs: 2}\n")
    result = run_cli("validate", child)
    assert (result.exit_code, result.stderr) == (0, "")
    assert f"path: {home / 't.csv'}" in result.stdout


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_validate_refuses_a_fifo_or_device(run_cli: Cli, fifo: Path, kind: str) -> None:
    """`dltool validate some.fifo` hung; /dev/zero grew memory until MemoryError."""
    path = fifo if kind == "fifo" else Path("/dev/zero")
    result = run_cli("validate", path)
    assert (result.exit_code, result.stderr) == (2, f"error: {path}: not a regular file\n")


def test_validate_refuses_an_oversized_file(run_cli: Cli, tmp_path: Path) -> None:
    path = _sparse(tmp_path / "huge.yaml", MAX_FILE_BYTES * 3)
    result = run_cli("validate", path)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {path}: file is {MAX_FILE_BYTES * 3:,} bytes; the limit is {MAX_FILE_BYTES:,}\n",
    )


@pytest.mark.parametrize(
    "data",
    [
        {"source": "csv", "path": "pipe", "target": "y"},
        {"source": "csv", "path": "table.csv", "test_path": "pipe", "target": "y"},
        {"source": "numpy", "path": "pipe.npz"},
        {"source": "numpy", "path": "pipe.npy", "labels_path": "y.npy"},
    ],
    ids=["csv", "csv-test-path", "npz", "npy"],
)
def test_data_path_fifo_is_refused(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, data: dict[str, Any]
) -> None:
    """`data.path: some.fifo` hung `dltool train` and `dltool data`."""
    for name in ("pipe", "pipe.npz", "pipe.npy"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "table.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n5,0\n")
    np.save(tmp_path / "y.npy", np.zeros(4, dtype="int64"))
    config = tiny_config(data=data, model={"input_shape": [1]})
    config["data"] = data
    path = write_config(config)
    result = run_cli("data", path, "--out", tmp_path / "out")
    pipe = tmp_path / ("pipe" if data["source"] == "csv" else data["path"])
    assert (result.exit_code, result.stderr) == (2, f"error: {pipe}: not a regular file\n")
    assert not (tmp_path / "out").exists()


def test_a_table_larger_than_memory_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2 GB CSV gave MemoryError after 32 s; now a one-line refusal before any read."""
    monkeypatch.setattr(files, "available_memory", lambda: 3_000_000_000)
    table = _sparse(tmp_path / "big.csv", 2_000_000_000)  # no line ends: at least its text, twice
    whole = {"source": "csv", "path": str(table), "target": "y", "loading": "memory"}
    with pytest.raises(DataError) as caught:
        load_dataset(CsvData.model_validate(whole), 0, "multiclass")
    assert caught.value.lines == [
        f"{table}: the file is 2.0 GB; reading it needs about 4.0 GB of memory and 3.0 GB is "
        "available (stream it instead: data.loading: stream)"
    ]
    streamed = CsvData.model_validate({**whole, "loading": "auto"})  # 2 GB: streamed
    with pytest.raises(DataError) as caught:
        load_dataset(streamed, 0, "multiclass")
    assert caught.value.lines == [
        f"{table}: line 1 is longer than 1.0 MB (expected a header line of column names, "
        "then one line per row)"
    ]
    arrays = _sparse(tmp_path / "big.npz", 2_000_000_000)
    config_arrays = NumpyData.model_validate({"source": "numpy", "path": str(arrays)})
    with pytest.raises(
        DataError, match=r"big\.npz: the file is 2\.0 GB; reading it needs about 4\.0 GB"
    ):
        load_dataset(config_arrays, 0, "multiclass")


def test_a_narrow_table_is_estimated_by_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short rows take far more memory than their text (a label string per row): 1,001 rows of
    2 columns are estimated at 1,001 x (2 x 16 + 100) bytes, 33 times the file's 4,004."""
    table = tmp_path / "narrow.csv"
    table.write_text("a,y\n" + "1,0\n1,1\n" * 500)
    assert files.table_memory(table) == 1001 * (2 * 16 + 100)
    monkeypatch.setattr(files, "available_memory", lambda: 100_000)
    config = CsvData.model_validate({"source": "csv", "path": str(table), "target": "y"})
    with pytest.raises(
        DataError,
        match=r"the file is 4,004 bytes; reading it needs about 132,132 bytes of memory and 100,000 bytes is available",
    ):
        config.load(0, "binary")
    monkeypatch.setattr(files, "available_memory", lambda: 200_000)
    assert len(config.load(0, "binary").x_train) == 1000


def _cgroup(tmp_path: Path, groups: str, files_: dict[str, str]) -> tuple[Path, Path]:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cgroup").write_text(groups)
    for name, text in files_.items():
        (tmp_path / "mount" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mount" / name).write_text(text)
    return tmp_path / "proc" / "cgroup", tmp_path / "mount"


V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat")
V2 = ("memory.max", "memory.current", "memory.stat")


def _limits(folder: str, names: tuple[str, ...], *texts: str) -> dict[str, str]:
    return {f"{folder}{name}": text for name, text in zip(names, texts, strict=True)}


@pytest.mark.parametrize(
    ("groups", "files_", "left"),
    [
        pytest.param(  # v2: limit - current + (page cache - shared memory)
            "0::/box\n",
            _limits("box/", V2, "1000000\n", "600000\n", "anon 400000\nfile 150000\nshmem 50000\n"),
            500_000,
            id="v2",
        ),
        pytest.param("0::/box\n", _limits("box/", V2, "max\n", "5\n", ""), None, id="v2-no-limit"),
        pytest.param(  # v1 (Docker on cgroup v1, this machine): the memory controller's line
            "4:memory:/c/d\n1:cpu:/\n0::/\n",
            _limits("memory/c/d/", V1, "2000000\n", "1500000\n", "cache 9\ntotal_cache 300000\n"),
            800_000,
            id="v1",
        ),
        pytest.param(  # the same, the kernel's lines in another order: the order does not matter
            "0::/\n4:memory:/c/d\n",
            _limits("memory/c/d/", V1, "2000000\n", "1500000\n", "total_cache 300000\n"),
            800_000,
            id="v1-after-v2",
        ),
        pytest.param(  # a container that names the host's group but mounts its own at the root
            "0::/host/group\n", _limits("", V2, "1000\n", "1500\n", ""), 0, id="v2-root-over-limit"
        ),
        pytest.param(
            "4:memory:/\n",
            _limits("memory/", V1, "9223372036854771712\n", "1\n", ""),  # v1's "no limit"
            None,
            id="v1-no-limit",
        ),
        pytest.param(  # the limit is on a parent group (a systemd slice, a pod): it binds too
            "0::/pod/box\n",
            {
                **_limits("pod/", V2, "5000\n", "4000\n", "file 500\n"),
                **_limits("pod/box/", V2, "max\n", "3000\n", ""),
                **_limits("", V2, "max\n", "9000\n", ""),
            },
            1500,
            id="v2-parent-limit",
        ),
        pytest.param(  # a group that cannot be read is left out; the others still count
            "0::/pod/box\n",
            {
                **_limits("pod/", V2, "5000\n", "4000\n", "file 500\n"),
                **_limits("pod/box/", V2, "1000\n", "not a number\n", ""),
            },
            1500,
            id="v2-unreadable-group",
        ),
        pytest.param(  # v1 with tmpfs pages in the cache: those are not reclaimable
            "4:memory:/c\n",
            _limits(
                "memory/c/",
                V1,
                "2000000\n",
                "1500000\n",
                "total_cache 300000\ntotal_shmem 100000\n",
            ),
            700_000,
            id="v1-shmem",
        ),
        pytest.param(  # no memory.stat: the limit still counts, with no cache taken off
            "0::/box\n",
            {"box/memory.max": "1000\n", "box/memory.current": "400\n"},
            600,
            id="v2-no-stat",
        ),
        pytest.param("0::/x\n", {}, None, id="no-files"),
        pytest.param("garbage\n", {}, None, id="unreadable"),
    ],
)
def test_available_memory_counts_the_cgroup_limit(
    tmp_path: Path, groups: str, files_: dict[str, str], left: int | None
) -> None:
    """A container's memory limit is far below the machine's MemAvailable: the checks before
    reading data must see what the container still allows."""
    assert files._cgroup_available(*_cgroup(tmp_path, groups, files_)) == left


def test_available_memory_is_the_least_of_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    free = 8 * 2**30
    monkeypatch.setattr(files, "_meminfo_available", lambda: free)  # it changes all the time
    monkeypatch.setattr(files, "_cgroup_available", lambda: None)
    real = resource.getrlimit
    limit = resource.RLIM_INFINITY  # no ulimit -v
    # the stand-in reads `limit` when called: each assignment below sets a new ulimit -v
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, limit) if which == resource.RLIMIT_AS else real(which))  # fmt: skip
    assert files._address_space_left() is None
    assert files.available_memory() == free
    limit = 10 * free  # ulimit -v far above the free memory: MemAvailable decides
    left = files._address_space_left()
    assert left is not None
    assert 0 < limit - left < 64 * 2**40  # the limit less what is mapped
    assert files.available_memory() == free
    limit = (limit - left) + 2**30  # 1 GiB more than the process has mapped
    assert 2**30 - 2**28 < files.available_memory() <= 2**30  # (it maps a little as it runs)
    limit = 1 << 20  # less than the process has mapped already: nothing left
    assert files._address_space_left() == 0 == files.available_memory()
    monkeypatch.setattr(files, "_cgroup_available", lambda: 7)
    assert files.available_memory() == 0
    limit = resource.RLIM_INFINITY
    assert files.available_memory() == 7
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows: no resource module
    assert files._address_space_left() is None
    assert files.available_memory() == 7


def test_predict_input_fifo_is_refused(fifo: Path) -> None:
    from dltool.inputs import InputSpec, array_chunks, csv_chunks

    spec = InputSpec(input_shape=[3], feature_names=["a", "b", "c"])
    with pytest.raises(InputError, match=rf"^{fifo}: not a regular file$"):
        next(csv_chunks(fifo, spec, labelled=False))
    with pytest.raises(InputError, match=rf"^{fifo}: not a regular file$"):
        next(array_chunks(fifo, spec, labelled=False))


@pytest.mark.slow
def test_validate_fifo_in_a_real_process(fifo: Path) -> None:
    """SIGTERM was only recorded while `dltool validate` blocked in open(): the process itself
    must return, not merely the in-process runner."""
    import sys

    done = subprocess.run(
        [str(Path(sys.executable).with_name("dltool")), "validate", str(fifo)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"error: {fifo}: not a regular file\n")
