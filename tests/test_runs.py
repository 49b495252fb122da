"""`dltool runs` and `dltool runs compare`: reading run folders back, without TensorFlow."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_config
from dltool.config import validate_config

Cli = Callable[..., Any]


def _fake_run(runs: Path, name: str, accuracy: float | None, status: str = "completed", pid: int | None = None, **config_changes: Any) -> Path:  # fmt: skip
    folder = runs / name
    folder.mkdir(parents=True)
    config = validate_config(tiny_config(**config_changes), "x").model_dump(
        mode="json"
    )  # as resolved
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    info = {"status": status, "name": name, "started_at": f"2026-01-01T00:00:0{len(list(runs.iterdir()))}+00:00", "duration_s": 1.5, "params": 21, "seed": 3, "overrides": []}  # fmt: skip
    if pid is not None:
        info.update(pid=pid, host=platform.node())
    (folder / "run.json").write_text(json.dumps(info))
    if accuracy is not None:
        (folder / "metrics.json").write_text(
            json.dumps({"test": {"loss": 1 - accuracy, "accuracy": accuracy}})
        )
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    _fake_run(folder, "a", 0.70)
    _fake_run(folder, "b", 0.90, training={"optimizer": "sgd"})
    _fake_run(folder, "c", None, status="failed")
    _fake_run(folder, "d", 0.80, data={"labels": "random"})
    return folder


def _listed(run_cli: Cli, *args: str | Path) -> list[str]:
    result = run_cli("runs", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return [row["run"] for row in json.loads(result.stdout)]


def test_list_sort_filter(run_cli: Cli, runs: Path) -> None:
    assert _listed(run_cli, "--runs-dir", runs) == ["a", "b", "c", "d"]
    assert _listed(run_cli, "--runs-dir", runs, "--sort", "test.accuracy") == ["b", "d", "a", "c"]
    assert _listed(run_cli, "--runs-dir", runs, "--sort", "test.loss") == ["b", "d", "a", "c"]
    assert _listed(run_cli, "--runs-dir", runs, "--sort", "accuracy", "--reverse") == [
        "c",
        "a",
        "d",
        "b",
    ]
    assert _listed(
        run_cli, "--runs-dir", runs, "--filter", "status=completed", "--filter", "data.labels=rule"
    ) == ["a", "b"]
    assert _listed(run_cli, "--runs-dir", runs, "--filter", "training.optimizer.name=sgd") == ["b"]
    table = run_cli("runs", "--runs-dir", runs)
    assert table.exit_code == 0
    header, *lines = table.stdout.splitlines()  # not a terminal: one plain line per run
    assert header.split("\t") == ["run", "status", "started", "time", "params", "test.loss", "test.accuracy"]  # fmt: skip
    assert [line.split("\t")[:2] for line in lines] == [["a", "completed"], ["b", "completed"], ["c", "failed"], ["d", "completed"]]  # fmt: skip


@pytest.mark.slow
def test_crashed_runs(run_cli: Cli, tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)  # a process that has exited
    _fake_run(tmp_path / "runs", "dead", None, status="running", pid=dead_pid)
    import os

    _fake_run(tmp_path / "runs", "alive", None, status="running", pid=os.getpid())
    rows = json.loads(run_cli("runs", "--runs-dir", tmp_path / "runs", "--json").stdout)
    assert {row["run"]: row["status"] for row in rows} == {"dead": "crashed", "alive": "running"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--sort", "test.acuracy"],
            r"--sort test.acuracy: no run has this number, did you mean 'test.accuracy'\?",
            id="sort",
        ),
        pytest.param(["--filter", "status"], r"--filter status: expected KEY=VALUE", id="filter"),
        pytest.param(
            ["--filter", "data.lables=rule"],
            r"^error: --filter data.lables=rule: no run has the key 'data.lables', did you mean "
            r"'data.labels'\? \(expected a config key such as data.labels, a metric such as "
            r"test.accuracy, or a run.json field such as status\)\n$",
            id="filter-typo",  # was "0 runs", exit 0
        ),
    ],
)
def test_list_errors(run_cli: Cli, runs: Path, args: list[str], message: str) -> None:
    result = run_cli("runs", "--runs-dir", runs, *args)
    assert result.exit_code == 2
    assert pytest.importorskip("re").search(message, result.stderr), result.stderr


def test_missing_runs_dir(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("runs", "--runs-dir", tmp_path / "none")
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {tmp_path / 'none'}: no such runs folder\n",
    )


def test_compare(run_cli: Cli, runs: Path) -> None:
    result = run_cli("runs", "compare", runs / "a", runs / "b", runs / "d", "--json")
    assert result.exit_code == 0, result.stderr
    compared = json.loads(result.stdout)
    assert compared["runs"] == ["a", "b", "d"]
    assert compared["config_differences"]["training.optimizer.name"] == ["adam", "sgd", "adam"]
    assert compared["config_differences"]["data.labels"] == ["rule", "rule", "random"]
    assert "model.input_shape" not in compared["config_differences"]
    assert compared["metrics"]["test.accuracy"] == [0.7, 0.9, 0.8]
    shown = run_cli("runs", "compare", runs / "a", runs / "b")
    lines = [line.split("\t") for line in shown.stdout.splitlines()]
    assert lines[0] == ["key", "a", "b"]
    assert ["test.accuracy", "0.7000", "0.9000"] in lines
    assert ["training.optimizer.name", "adam", "sgd"] in lines
    one = run_cli("runs", "compare", runs / "a")
    assert (one.exit_code, one.stderr) == (
        2,
        "error: runs compare: give at least two run folders\n",
    )


BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else '1, 2, 3, 4, 5, 6, 7, 8, 9'}]\n"
    for previous, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)  # 9**9 = 387 million values once expanded; 600 bytes on disk


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "content", "problem"),
    [
        pytest.param(
            "config.yaml",
            BILLION_LAUGHS.encode(),
            "config.yaml: more than 100,000 values once aliases are expanded (an alias bomb?)",
            id="alias-bomb",
        ),
        pytest.param(
            "config.yaml",
            b"a: &x [*x]\n",
            "config.yaml: line 1: an alias refers to itself",
            id="self-alias",
        ),
        pytest.param(
            "config.yaml",
            b"a: " + b"[" * 200 + b"]" * 200 + b"\n",
            "config.yaml: line 1: nested more than 50 levels deep",
            id="deep-nesting",
        ),
        pytest.param(
            "config.yaml",
            b"a: !!python/object/apply:os.system ['touch pwned']\n",
            "could not determine a constructor",
            id="python-tag",
        ),
        pytest.param(
            "config.yaml",
            b"name: a\nname: b\n",
            "config.yaml: line 2: duplicate key 'name' (first defined on line 1)",
            id="duplicate-key",
        ),
        pytest.param(
            "config.yaml",
            b"name: caf\xe9\n",
            "config.yaml: not UTF-8 text (bad byte at offset 9)",
            id="latin-1",
        ),
        pytest.param(
            "config.yaml",
            b"a: " + b"x" * 1_000_001,
            "config.yaml: file is 1,000,004 bytes; the limit is 1,000,000",
            id="huge",
        ),
        pytest.param("config.yaml", b"- 1\n", "config.yaml: top level is a list", id="list"),
        pytest.param("metrics.json", b"[" * 100_000 + b"]" * 100_000, None, id="deep-json"),
        pytest.param(
            "metrics.json",
            b'{"test": "not a mapping", "validation": 3}',
            "metrics.json: test: not a mapping of metric names to numbers",
            id="metrics-not-mappings",
        ),
        pytest.param("run.json", b"[" * 100_000 + b"]" * 100_000, None, id="deep-run-json"),
    ],
)
def test_planted_files_never_hang_or_break_runs(
    run_cli: Cli, tmp_path: Path, file: str, content: bytes, problem: str | None
) -> None:
    """A runs folder someone else can write to: a planted file makes that run show with
    an empty config (and a note), never a hang, a traceback or code run. First a real
    `dltool runs` process with a timeout (an alias bomb walked by flatten() would never
    end), then the other views in-process."""
    runs = tmp_path / "runs"
    _fake_run(runs, "good", 0.9)
    planted = _fake_run(runs, "planted", 0.8)
    (planted / file).write_bytes(content)
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("dltool")), "runs", "--runs-dir", str(runs), "--json"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert (listed.returncode, listed.stderr) == (0, "")
    rows = {row["run"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"good", "planted"}
    assert rows["good"]["problems"] == []
    if problem is not None:
        assert any(problem in line for line in rows["planted"]["problems"])
    if file == "config.yaml":
        assert rows["planted"]["metrics"]["test"]["accuracy"] == 0.8
    assert set(_listed(run_cli, "--runs-dir", runs, "--filter", "data.labels=rule")) == (
        {"good"} if file == "config.yaml" else {"good", "planted"}
    )
    table = run_cli("runs", "--runs-dir", runs, "--sort", "test.accuracy")
    assert table.exit_code == 0
    assert [line.split("\t")[0] for line in table.stdout.splitlines()] == ["run", "good", "planted"]  # fmt: skip
    notes = table.stderr.splitlines()
    assert all(line.startswith(f"note: {planted}: {file}: ") for line in notes), notes
    assert bool(notes) == (problem is not None)
    compared = run_cli("runs", "compare", runs / "good", planted, "--json")
    assert (compared.exit_code, compared.stderr) == (0, "")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("file", "change", "problem"),
    [
        pytest.param("run.json", {"duration_s": "long"}, "run.json: duration_s: wrong type (received 'long'; expected a number)", id="duration"),
        pytest.param("run.json", {"params": "many"}, "run.json: params: wrong type (received 'many'; expected an integer)", id="params"),
        pytest.param("run.json", {"params": True}, "run.json: params: wrong type (received true; expected an integer)", id="params-bool"),
        pytest.param("run.json", {"status": "running", "pid": 10**30}, "run.json: pid: out of range", id="huge-pid"),
        pytest.param("run.json", {"status": "running", "pid": 1e300}, "run.json: pid: wrong type", id="float-pid"),
        pytest.param("run.json", {"overrides": "a=1"}, "run.json: overrides: wrong type", id="overrides"),
        pytest.param("run.json", {"started_at": 5}, "run.json: started_at: wrong type", id="started"),
        pytest.param("run.json", {"status": ["x"]}, "run.json: status: wrong type", id="status"),
        pytest.param("metrics.json", {"test": {"accuracy": "high", "loss": 0.1}}, "metrics.json: test.accuracy: not a number (received 'high')", id="metric"),
        pytest.param("metrics.json", {"test": {"accuracy": None}}, "metrics.json: test.accuracy: not a number (received null)", id="metric-null"),
    ],
)  # fmt: skip
def test_a_bad_field_is_a_problem_of_that_run(
    run_cli: Cli, runs: Path, file: str, change: dict[str, Any], problem: str
) -> None:
    """One bad field in one run folder: every run is still listed, the bad field left out
    and named; the table, sort and compare work (they gave `internal error` before)."""
    path = runs / "b" / file
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, **change}))
    listed = run_cli("runs", "--runs-dir", runs, "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = {row["run"]: row for row in json.loads(listed.stdout)}
    assert sorted(rows) == ["a", "b", "c", "d"]
    (line,) = rows["b"]["problems"]
    assert line.startswith(problem), line
    assert all(not rows[name]["problems"] for name in "acd")
    field = problem.split(": ")[1]
    if file == "run.json":  # left out
        assert rows["b"].get(field) in (None, [], "unknown")
    else:
        assert "accuracy" not in rows["b"]["metrics"]["test"]
    table = run_cli("runs", "--runs-dir", runs, "--sort", "test.accuracy")
    assert table.exit_code == 0, table.stderr
    order = [row.split("\t")[0] for row in table.stdout.splitlines()][1:]
    assert order == (["d", "a", "b", "c"] if file == "metrics.json" else ["b", "d", "a", "c"])
    assert table.stderr == f"note: {runs / 'b'}: {line}\n"
    compared = run_cli("runs", "compare", runs / "a", runs / "b")
    assert (compared.exit_code, compared.stderr) == (0, f"note: {runs / 'b'}: {line}\n")


def test_json_has_every_field(run_cli: Cli, tmp_path: Path) -> None:
    folder = _fake_run(tmp_path / "runs", "full", 0.9)
    info = json.loads((folder / "run.json").read_text())
    info.update(finished_at="2026-01-01T00:00:09+00:00", epochs_completed=3, versions={"keras": "3.15.1", "python": "3.11"}, error=None)  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    (row,) = json.loads(run_cli("runs", "--runs-dir", tmp_path / "runs", "--json").stdout)
    assert row["finished_at"] == "2026-01-01T00:00:09+00:00"
    assert row["epochs_completed"] == 3
    assert row["versions"] == {"keras": "3.15.1", "python": "3.11"}
    assert row["config"] == yaml.safe_load((folder / "config.yaml").read_text())
    assert row["config"]["training"]["optimizer"]["name"] == "adam"
    assert row["problems"] == []
    assert set(row) == {"run", "path", "name", "status", "started_at", "finished_at", "duration_s", "epochs_completed", "params", "seed", "overrides", "error", "versions", "data_fingerprint", "metrics", "config", "problems"}  # fmt: skip


def test_json_config_with_yaml_only_values(run_cli: Cli, tmp_path: Path) -> None:
    """A config.yaml with a date and a number as keys still gives valid JSON."""
    folder = _fake_run(tmp_path / "runs", "dated", 0.9)
    (folder / "config.yaml").write_text("name: dated\nwhen: 2026-01-01\n3: three\n")
    result = run_cli("runs", "--runs-dir", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["config"] == {"name": "dated", "when": "2026-01-01", "3": "three"}
    compared = run_cli("runs", "compare", folder, folder, "--json")
    assert compared.exit_code == 0, compared.stderr


PLANTED = "[bold red]boom[/] \x1b]0;pwned\x07 \x1b[31mred\x9b1m"


def test_planted_markup_and_escapes_never_reach_the_terminal(run_cli: Cli, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = _fake_run(runs, "planted", 0.9)
    other = _fake_run(runs, "other", 0.8)
    info = json.loads((folder / "run.json").read_text())
    info.update(status=PLANTED, name=PLANTED, overrides=[PLANTED])
    (folder / "run.json").write_text(json.dumps(info))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["data"]["labels"] = PLANTED
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for args in (["runs", "--runs-dir", runs], ["runs", "compare", folder, other]):
        result = run_cli(*args)
        assert result.exit_code == 0, result.stderr
        assert "[bold red]boom[/]" in result.stdout
        assert not any(c in result.stdout for c in "\x1b\x07\x9b"), repr(result.stdout)


def _plant(folder: Path, file: str, kind: str) -> None:
    """Replace ``folder/file`` with a FIFO, or a link to the endless device /dev/zero."""
    (folder / file).unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(folder / file)
    else:
        (folder / file).symlink_to("/dev/zero")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("file", ["config.yaml", "metrics.json"])
def test_fifos_and_devices_in_a_run_folder_are_noted_not_read(
    tmp_path: Path, file: str, kind: str
) -> None:
    """A FIFO blocked `dltool runs` forever; /dev/zero grew memory until MemoryError.
    Each view returns at once, listing the run with a note."""
    runs = tmp_path / "runs"
    _fake_run(runs, "good", 0.9)
    planted = _fake_run(runs, "planted", 0.8)
    _plant(planted, file, kind)
    dltool = str(Path(sys.executable).with_name("dltool"))
    for args in (
        ["runs", "--runs-dir", str(runs), "--json"],
        ["runs", "--runs-dir", str(runs)],
        ["runs", "--runs-dir", str(runs), "--sort", "test.accuracy"],
        ["runs", "compare", str(runs / "good"), str(planted)],
    ):
        done = subprocess.run([dltool, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr in ("", f"note: {planted}: {file}: not a regular file\n"), args
    listed = subprocess.run(
        [dltool, "runs", "--runs-dir", str(runs), "--json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    rows = {row["run"]: row for row in json.loads(listed.stdout)}
    assert rows["planted"]["problems"] == [f"{file}: not a regular file"]


def test_filter_on_a_key_that_is_null_in_every_run(run_cli: Cli, runs: Path) -> None:
    """A key every run has, as null, is a key: no 'did you mean' it, just no match."""
    for folder in runs.iterdir():
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["seed"] = None
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("runs", "--runs-dir", runs, "--filter", "seed=null")
    assert (result.exit_code, result.stderr) == (0, "")
