"""The command line: instant commands stay free of TensorFlow; the real console script works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIGS, REPO, tiny_config
from dltool import __version__
from dltool.errors import ConfigError
from dltool.layers import LAYERS

DLTOOL = Path(sys.executable).with_name("dltool")

# Runs a CLI command in a fresh interpreter and reports which heavy modules it imported.
PROBE = """
import json, sys
from typer.testing import CliRunner
from dltool.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in ("tensorflow", "keras", "numpy", "matplotlib", "sklearn", "optuna", "markdown_it", "rich.traceback", "importlib.metadata") if m in sys.modules)
print(json.dumps({"exit": result.exit_code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--help"], id="help"),
        pytest.param(["--version"], id="version"),
        pytest.param(["validate", str(CONFIGS / "student_pass.yaml")], id="validate"),
        pytest.param(["layers"], id="layers"),
        pytest.param(["runs", "--runs-dir", str(REPO / "runs")], id="runs"),
        pytest.param(["train", "--help"], id="train-help"),
        pytest.param(["schema", "--sweep"], id="schema"),
        pytest.param(["sweep", "--help"], id="sweep-help"),
    ],
)
@pytest.mark.slow
def test_instant_commands_do_not_import_tensorflow(args: list[str]) -> None:
    output = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    report = json.loads(output.strip().splitlines()[-1])
    assert report["exit"] == 0
    assert "tensorflow" not in report["heavy"]
    assert "keras" not in report["heavy"]
    if args[0] != "schema":  # the sweep schema lives in dltool.sweep, which needs optuna (53 ms)
        assert "optuna" not in report["heavy"]  # sweep commands import it inside
    # Typer's help renderer imports these for features dltool turns off (cli._light_help_renderer)
    assert "markdown_it" not in report["heavy"]
    assert "rich.traceback" not in report["heavy"]
    if args[0] != "schema":  # optuna reads package metadata
        # pydantic's plugin loader imports it for a lookup dltool turns off (cli._pydantic_without_plugin_lookup)
        assert "importlib.metadata" not in report["heavy"]


@pytest.mark.parametrize(
    ("args", "built"),
    [
        (["validate", "-q", "exp.yaml"], ["validate"]),
        (["--debug", "continue", "runs/a"], ["continue"]),
        (["runs", "compare", "a", "b"], ["runs"]),
        (["--help"], None),  # the top-level help lists every command
        (["--version"], None),
        (["valdate", "exp.yaml"], None),  # its error suggests the others
    ],
)
def test_only_the_named_command_is_built(args: list[str], built: list[str] | None) -> None:
    from typer.main import get_command

    from dltool.cli import _only_the_named_command, app

    every = sorted(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"validate", "continue", "runs", "train"} <= set(every)
    with _only_the_named_command(args):
        assert sorted(get_command(app).commands) == (built or every)  # type: ignore[attr-defined]
    assert sorted(get_command(app).commands) == every  # type: ignore[attr-defined]


def test_version(run_cli: Callable[..., Any]) -> None:
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"dltool {__version__}\n"


def test_layers_lists_the_registry(run_cli: Callable[..., Any]) -> None:
    result = run_cli("layers")
    assert result.exit_code == 0
    for name in LAYERS:
        assert name in result.stdout
    assert "units (required)" in result.stdout
    assert "rate (required)" in result.stdout
    # Not a terminal: one tab-separated line per layer type, for grep and cut.
    lines = result.stdout.splitlines()
    assert lines[0] == "type\twhat it does\tparameters (default)"
    assert [line.split("\t")[0] for line in lines[1:]] == list(LAYERS)
    assert all(line.count("\t") == 2 for line in lines)
    dense = next(line for line in lines if line.startswith("dense\t"))
    assert "units (required); " in dense.split("\t")[2]


def test_debug_shows_the_traceback(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    plain = run_cli("validate", missing)
    assert plain.exit_code == 2
    assert isinstance(plain.exception, SystemExit)  # one line, no traceback
    assert plain.stderr.startswith(f"error: {missing}: ")
    result = run_cli("--debug", "validate", missing)
    assert isinstance(result.exception, ConfigError)  # raised on, so Python prints its traceback
    assert result.exception.lines == [plain.stderr.removeprefix("error: ").rstrip("\n")]
    assert result.stderr == ""  # not reported twice


def test_internal_error_is_one_line(
    run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, write_config: Callable[..., Path]
) -> None:
    import dltool.config

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(dltool.config, "load_config", broken)
    result = run_cli("validate", write_config(tiny_config()))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: internal error: RuntimeError: boom (a bug in dltool: rerun with --debug"
    )
    assert "Traceback" not in result.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}


@pytest.mark.slow
def test_console_script_trains_end_to_end(tmp_path: Path) -> None:
    """The installed `dltool` executable, as a user runs it (one real TensorFlow start-up)."""
    import yaml

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    runs = tmp_path / "runs"
    # Output block-buffered, as in a pipe: the process leaves without Python's shutdown
    # (cli.leave_now), so this proves that everything printed still arrives.
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [str(DLTOOL), "train", str(config), "--runs-dir", str(runs)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = runs.iterdir()
    assert f"run saved to {run}" in done.stdout
    assert "epoch 1/1" in done.stdout
    # TensorFlow's start-up noise is silenced: nothing on stderr for a clean run.
    assert done.stderr == "", done.stderr
    assert json.loads((run / "run.json").read_text())["command"][1:3] == ["train", str(config)]


class _Left(Exception):
    pass


class _Leaving:
    """cli.leave_now in this pytest worker: os._exit raises :class:`_Left`, the exit handlers
    and logging's shutdown are recorded instead of run (pytest's own stay), and what other
    tests left in the worker (threads, multiprocessing children, Ray, TensorFlow) is hidden:
    ``loaded`` modules and ``threads`` are what a test sets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import atexit
        import logging
        import multiprocessing
        import threading

        from dltool import cli

        self.monkeypatch, self.exit_handlers_ran = monkeypatch, 0
        self.threads: list[Any] = []  # besides the main thread
        for name in ("tensorflow", *cli.NEEDS_SHUTDOWN):
            monkeypatch.delitem(sys.modules, name, raising=False)

        def left(status: int) -> None:
            raise _Left(status)

        def exit_handlers() -> None:
            self.exit_handlers_ran += 1

        monkeypatch.setattr(os, "_exit", left)
        monkeypatch.setattr(atexit, "_run_exitfuncs", exit_handlers)
        monkeypatch.setattr(logging, "shutdown", lambda: None)
        monkeypatch.setattr(multiprocessing, "active_children", lambda: [])
        self.every_thread = threading.enumerate  # the real one
        monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread(), *(t for t in self.threads if t.is_alive())])  # fmt: skip

    def load(self, *names: str) -> None:
        for name in names:
            self.monkeypatch.setitem(sys.modules, name, sys.modules.get(name, object()))

    def code(self, code: Any) -> int | None:
        """The status leave_now(code) left with, or None where it returned."""
        from dltool import cli

        try:
            cli.leave_now(code)
        except _Left as left:
            return int(left.args[0])
        return None


@pytest.fixture
def leaving(monkeypatch: pytest.MonkeyPatch) -> _Leaving:
    return _Leaving(monkeypatch)


@pytest.mark.parametrize(
    ("loaded", "code", "left_with", "exit_handlers_ran"),
    [
        (["tensorflow"], None, 0, False),  # TensorFlow's own handlers are the slow part
        (["tensorflow"], 0, 0, False),
        (["tensorflow"], 3, None, False),  # a failed run: buffers (TensorBoard's) flush at shutdown
        (["tensorflow"], "a message", None, False),
        ([], 0, 0, True),  # validate, runs, --help: the exit handlers run, the teardown is skipped
        ([], None, 0, True),
        ([], 2, None, False),  # a refused config leaves the usual way
        (["tensorflow", "ray"], 0, None, False),  # Ray's exit handlers stop a private cluster
        (["ray"], 0, None, False),
    ],
)
def test_leave_now_skips_the_slow_shutdown_only_where_it_is_safe(
    leaving: _Leaving, loaded: list[str], code: Any, left_with: int | None, exit_handlers_ran: bool
) -> None:
    leaving.load(*loaded)
    assert leaving.code(code) == left_with  # None: returned, the caller's SystemExit goes on
    assert leaving.exit_handlers_ran == int(exit_handlers_ran)


@pytest.mark.parametrize("loaded", [[], ["tensorflow"]])
def test_leave_now_waits_for_a_live_thread_or_child_as_python_does(
    leaving: _Leaving, monkeypatch: pytest.MonkeyPatch, loaded: list[str]
) -> None:
    """A thread that is not a daemon (a writer still finishing) keeps Python's own shutdown,
    which joins it; os._exit would cut it off. So does a multiprocessing child."""
    import multiprocessing
    import threading

    leaving.load(*loaded)
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    leaving.threads = [worker]
    try:
        assert leaving.code(0) is None
    finally:
        release.set()
        worker.join()
    daemon = threading.Thread(target=release.wait, daemon=True)  # daemons do not count
    release.clear()
    daemon.start()
    leaving.threads = [daemon]
    try:
        monkeypatch.setattr(multiprocessing, "active_children", lambda: [object()])
        assert leaving.code(0) is None
        monkeypatch.setattr(multiprocessing, "active_children", lambda: [])
        assert leaving.code(0) == 0
    finally:
        release.set()
        daemon.join()


def test_leave_now_closes_the_image_decoding_pool_and_leaves(leaving: _Leaving) -> None:
    """A command that decoded images (train or predict on an image folder) leaves the
    process's decoding pool behind, idle: leave_now ends its threads and still leaves at once."""
    from dltool.data import rows

    assert rows.pool().submit(sum, [1, 2]).result() == 3
    decoding = [t for t in leaving.every_thread() if t.name.startswith("dltool-decode")]
    assert decoding
    assert not any(t.daemon for t in decoding)
    leaving.threads = decoding
    assert leaving.code(0) == 0
    assert not any(t.is_alive() for t in decoding)
    assert rows.pool().submit(sum, [3, 4]).result() == 7  # a new pool, should the process go on


@pytest.mark.slow
def test_instant_command_leaves_fast_with_its_output_and_exit_handlers(tmp_path: Path) -> None:
    """`dltool validate` in a pipe (block-buffered stdout) leaves through leave_now: every
    line arrives, and an exit handler registered before the command still runs."""
    import yaml

    config = tmp_path / "exp.yaml"
    config.write_text((REPO / "configs" / "student_pass.yaml").read_text())
    marker, left = tmp_path / "exit-handler-ran", tmp_path / "left-with"
    script = (
        "import atexit, os, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "real_exit = os._exit\n"
        f"def leaving(code): pathlib.Path({str(left)!r}).write_text(str(code)); real_exit(code)\n"
        "os._exit = leaving\n"
        "from dltool.cli import main\n"
        "sys.argv = ['dltool', 'validate', sys.argv[1]]\n"
        "main()\n"
    )
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(config)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert left.read_text() == "0"  # through leave_now, not Python's shutdown
    resolved = yaml.safe_load(done.stdout)  # all of it arrived: the last key is there
    assert resolved["name"] == "student-pass"
    assert resolved["training"]["distribute"] is None
    assert marker.read_text() == "yes"


@pytest.mark.slow
@pytest.mark.parametrize(
    "closed",
    [
        pytest.param(["--version", ">&-"], id="stdout"),
        pytest.param(["validate", "-q", str(CONFIGS / "student_pass.yaml"), "2>&-"], id="stderr"),
    ],
)
def test_a_command_started_with_an_output_closed_succeeds(closed: list[str]) -> None:
    """Started with stdout or stderr closed (Python then has None for that stream), a
    command that succeeds still exits 0 through leave_now."""
    done = subprocess.run(
        ["sh", "-c", " ".join([str(DLTOOL), *closed])], capture_output=True, text=True, timeout=60, env=_env()
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_reader_that_stops_early_is_not_an_error() -> None:
    """`dltool validate a.yaml b.yaml ... | head -1`: the reader closes the pipe after one
    line; the rest of the output (well over the pipe's 64 KiB buffer) goes nowhere, with
    no "internal error: BrokenPipeError" and exit 0."""
    paths = [str(CONFIGS / "student_pass.yaml")] * 100  # about 110 KiB of resolved configs
    with subprocess.Popen(
        [str(DLTOOL), "validate", *paths],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    ) as process:  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 0, stderr
    assert first.startswith(b"# ")
    assert stderr == b""


@pytest.mark.slow
def test_console_script_refuses_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("name: x\ndata: {source: student}\nmodel: {input_shape: [3], layers: []}\n")
    done = subprocess.run(
        [str(DLTOOL), "train", str(config), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {config}: model.layers: wrong number of items (received 0; expected at least 1)",
        f"error: {config}: training: missing required key (expected a mapping)",
    ]
    assert done.stdout == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dltool", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.stdout.strip() == f"dltool {__version__}"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--set", "training.epochs=20"], "--set (received --set training.epochs=20)"),
        (["--name", "other", "--smoke"], "--name (received --name other --smoke)"),
        (["--profile"], "--profile (received --profile)"),
        (["--runs-dir", "elsewhere"], "--runs-dir (received --runs-dir elsewhere)"),
    ],
)
def test_resume_refuses_options_it_would_ignore(
    run_cli: Callable[..., Any], tmp_path: Path, options: list[str], named: str
) -> None:
    result = run_cli("train", "--resume", tmp_path, *options)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: --resume continues a run with the settings it started with, so it takes no "
        f"{named}; to change a run, train a new one; to train a completed run longer: "
        "dltool continue RUN --epochs N\n",
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["train", "--bogus"],
            "error: dltool train: No such option: --bogus (see dltool train --help)",
        ),
        (["nosuch"], "error: dltool: No such command 'nosuch' (see dltool --help)"),
        (["--bogus"], "error: dltool: No such option: --bogus (see dltool --help)"),
        (
            ["predict"],
            "error: dltool predict: Missing argument 'run_path' (see dltool predict --help)",
        ),
    ],
)
def test_usage_errors_are_one_line(run_cli: Callable[..., Any], args: list[str], line: str) -> None:
    result = run_cli(*args)
    assert (result.exit_code, result.stderr, result.stdout) == (2, line + "\n", "")


COMMANDS = [[], ["train"], ["validate"], ["smoke"], ["sweep"], ["predict"], ["evaluate"], ["export"], ["runs"], ["runs", "compare"], ["data"], ["layers"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "dltool" for c in COMMANDS])
def test_help_shows_no_type_placeholders(run_cli: Callable[..., Any], command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"<(bool|path|str|int|float|list\[)", result.stdout) is None, result.stdout
    for line in result.stdout.splitlines():
        if line.startswith(("│ --help", "│ --json", "│ --smoke")):
            assert re.match(r"│ --\w+ +[A-Z_=]+ ", line) is None, line  # a flag takes no value
