"""Shared fixtures and two guards.

- Run folders live only in tmp_path: the repo's runs/ must not gain a folder that this
  test session wrote (another process training into runs/ meanwhile is not the tests' doing).
- A test that trains a model or starts a process is marked ``slow``, so that
  ``pytest -m "not slow"`` (``make test-fast``) is quick: an unmarked test that does
  either fails, naming what it did.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import multiprocessing.process
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHIPPED_CONFIGS = sorted(CONFIGS.glob("*.yaml"))  # the example configs users get

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ("pytester",)  # tests/test_conftest.py runs the guards on small test files

# ------------------------------------------------------------------ slow-marking guard

TRAINING = ("dltool.training", "_train_and_finish")  # where every fit goes through


class UnmarkedSlowTest(Exception):
    """Raised where a test that is not marked ``slow`` trains or starts a process."""


# One entry per test running now (a pytester test runs one inside another): None while a
# slow test runs, else the list of what the unmarked test did that only slow tests may do.
_running: list[list[str] | None] = []


def _forbid(what: str) -> None:
    if _running and _running[-1] is not None:
        _running[-1].append(what)
        raise UnmarkedSlowTest(f"{what}, but the test is not marked slow")


@contextmanager
def slow_only(allowed: bool) -> Iterator[list[str]]:
    """While the body runs, training or starting a process raises unless ``allowed``.

    Yields the list of what was refused (a test may catch the exception; the list stays).
    """
    refused: list[str] = []
    _running.append(None if allowed else refused)
    try:
        yield refused
    finally:
        _running.pop()


def _guard_item(item: pytest.Item) -> Generator[None, Any, Any]:
    with slow_only(item.get_closest_marker("slow") is not None) as refused:
        try:
            return (yield)
        finally:
            if refused:
                pytest.fail(
                    f"{item.nodeid}: {refused[0]}; mark it @pytest.mark.slow "
                    "(make test-fast leaves slow tests out)",
                    pytrace=False,
                )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guard_item(item))  # a fixture that trains makes its tests slow


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guard_item(item))


def _wrap_training(module: ModuleType) -> None:
    name = TRAINING[1]
    fit = getattr(module, name)  # renamed? then this guard must follow it: fail loudly
    if getattr(fit, "_slow_guard", False):
        return

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _forbid("it trains a model")
        return fit(*args, **kwargs)

    guarded._slow_guard = True  # type: ignore[attr-defined]
    setattr(module, name, guarded)


class _WrapTrainingOnImport(importlib.abc.MetaPathFinder):
    """Wraps the training entry when dltool.training is first imported, not before:
    importing it here would load TensorFlow into test runs that never need it."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if name != TRAINING[0]:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _wrap_training(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install_slow_guard() -> None:
    if getattr(subprocess.Popen._execute_child, "_slow_guard", False):  # type: ignore[attr-defined]
        return
    start_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
        _forbid(f"it starts a process ({str(args)[:80]})")
        started = start_child(self, args, *rest, **kwargs)
        record_pid(self.pid)
        return started

    start_process = multiprocessing.process.BaseProcess.start

    def start(self: multiprocessing.process.BaseProcess) -> None:
        _forbid("it starts a process (multiprocessing)")
        start_process(self)
        record_pid(self.pid)

    execute_child._slow_guard = True  # type: ignore[attr-defined]
    subprocess.Popen._execute_child = execute_child  # type: ignore[attr-defined]
    multiprocessing.process.BaseProcess.start = start  # type: ignore[method-assign]
    if TRAINING[0] in sys.modules:
        _wrap_training(sys.modules[TRAINING[0]])
    else:
        sys.meta_path.insert(0, _WrapTrainingOnImport())


# Modules whose tests share something costly to make, by the unit of work that takes them
# whole: trained runs (test_predict.py's student_run and digits_run, test_reproduce.py's
# table_run, test_report_browser.py's runs and its Chromium; the session's shipped_smoke,
# which test_examples.py checks and test_export.py exports), the PostgreSQL server
# (session-scoped) and the two-node Ray cluster. Under `make test` (-n 2 --dist loadgroup) each
# unit runs on one worker, so each is made once, not once per worker. The units are set in
# the scheduler itself: xdist's `xdist_group` mark no longer groups under pytest 9.2, where
# xdist's rename of the test ids is ignored (pytest-dev/pytest-xdist#1386), and each worker
# made its own.
SHARED_UNITS = {
    "tests/test_predict.py": "predict runs",
    "tests/test_examples.py": "shipped smoke runs",
    "tests/test_export.py": "shipped smoke runs",
    "tests/test_sweep_postgres.py": "postgres server",
    "tests/test_sweep_ray.py": "ray cluster",
    "tests/test_reproduce.py": "reproduce table run",
    "tests/test_report_browser.py": "report runs and chromium",
}


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: unknown where xdist is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: the tests of a SHARED_UNITS unit go to one worker together;
    every other test is a unit of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class SharedUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_UNITS.get(nodeid.split("::", 1)[0], nodeid)

    return SharedUnitScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with slow tests first, each module's tests in their own order (some modules
    rely on it: test_sweep_ray.py's tests that need no cluster run before it starts): xdist
    hands out work in this order, so the longest tests (sweeps, clusters, killed processes)
    start early and the quick ones fill the gaps at the end, instead of a long test starting
    last while the other worker idles."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


# ------------------------------------------------------------------ runs/ guard

# A file that lists the pids of this session's processes: pytest, its xdist workers and
# every process a test starts. Set once; workers and subprocesses inherit it.
PIDS_ENV = "DLTOOL_TEST_SESSION_PIDS"


def record_pid(pid: int | None) -> None:
    if pid is None or PIDS_ENV not in os.environ:
        return
    with open(os.environ[PIDS_ENV], "a", encoding="utf-8") as handle:
        handle.write(f"{pid}\n")  # one short append: whole even with several writers


def session_pids() -> set[int]:
    try:
        text = Path(os.environ[PIDS_ENV]).read_text(encoding="utf-8")
    except (KeyError, OSError):
        return {os.getpid()}
    return {int(line) for line in text.split()} | {os.getpid()}


def _writers(folder: Path) -> set[int]:
    """The pids that run.json and dltool.lock files in ``folder`` name (this host only)."""
    found: set[int] = set()
    for pattern in ("run.json", "dltool.lock", "*/run.json", "*/dltool.lock"):
        for path in folder.glob(pattern):
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            here = isinstance(info, dict) and info.get("host", platform.node()) == platform.node()
            if here and isinstance(info.get("pid"), int):
                found.add(info["pid"])
    return found


def written_by_tests(runs: Path, before: Iterable[str], pids: set[int]) -> list[str]:
    """The folders that appeared in ``runs`` since ``before`` and that one of ``pids`` wrote."""
    if not runs.is_dir():
        return []
    new = sorted(p for p in runs.iterdir() if p.name not in set(before))
    return [p.name for p in new if p.is_dir() and _writers(p) & pids]


def pytest_configure(config: pytest.Config) -> None:
    if PIDS_ENV not in os.environ:  # the first pytest process: xdist workers inherit it
        handle, name = tempfile.mkstemp(prefix="dltool-test-pids-", suffix=".txt")
        os.close(handle)
        os.environ[PIDS_ENV] = name
        config.add_cleanup(lambda: Path(name).unlink(missing_ok=True))
    record_pid(os.getpid())
    platform.processor()  # runs `uname -p` once and caches it: not a test's process
    _install_slow_guard()


@pytest.fixture(autouse=True, scope="session")
def _repo_runs_untouched() -> Iterator[None]:
    """No test may write into the repository's runs/ folder (what others write there is theirs)."""
    runs = REPO / "runs"
    before = [p.name for p in runs.iterdir()] if runs.is_dir() else []
    yield
    ours = written_by_tests(runs, before, session_pids())
    assert ours == [], f"tests wrote into {runs}: {ours}"


def tiny_config(**sections: Any) -> dict[str, Any]:
    """A config that trains in well under a second; keyword sections replace or update."""
    config: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "data": {"source": "student", "n_train": 200, "n_test": 40, "labels": "rule"},
        "model": {
            "input_shape": [3],
            "layers": [
                {"type": "normalization"},
                {"type": "dense", "units": 4, "activation": "relu"},
                {"type": "dense", "units": 1, "activation": "sigmoid"},
            ],
        },
        "training": {"loss": "binary_crossentropy", "epochs": 1, "batch_size": 32},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def assert_stratified(part: Any, whole: Any) -> None:
    """Each class has its share of ``whole`` in ``part``, to within one row.

    That is what a stratified split of ``whole`` gives (sklearn rounds each class's count
    down or up); a plain shuffled split is usually off by more.
    """
    import numpy as np

    part, whole = np.asarray(part).ravel(), np.asarray(whole).ravel()
    classes, counts = np.unique(whole, return_counts=True)
    expected = counts * len(part) / len(whole)
    got = np.array([(part == label).sum() for label in classes])
    assert set(np.unique(part)) <= set(classes), "part has classes that whole lacks"
    assert np.all(np.abs(got - expected) < 1), (
        f"class counts {dict(zip(classes.tolist(), got.tolist(), strict=True))}; a stratified split "
        f"gives {dict(zip(classes.tolist(), np.round(expected, 2).tolist(), strict=True))}"
    )


def fake_mnist_cache(keras_home: Path) -> None:
    """A tiny mnist.npz in Keras' cache layout (64 training, 16 test images): no download."""
    import numpy as np

    rng = np.random.default_rng(0)
    cache = keras_home / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache / "mnist.npz",
        x_train=rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8),
        y_train=np.arange(64, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, size=(16, 28, 28), dtype=np.uint8),
        y_test=np.arange(16, dtype=np.uint8) % 10,
    )


@dataclass(frozen=True)
class ShippedSmoke:
    """``dltool smoke configs/*.yaml --runs-dir DIR``, as CI runs it: its result, and each
    config's run (by the config's stem)."""

    result: Result
    runs: dict[str, Path]
    keras_home: Path  # the fake MNIST cache mnist_cnn read (no download)


@pytest.fixture(scope="session")
def shipped_smoke(tmp_path_factory: pytest.TempPathFactory) -> ShippedSmoke:
    """Every shipped config smoke-trained (1 epoch, at most 256 rows a split) once per worker:
    the CI guard test_examples.py checks, and the runs test_export.py exports."""
    from dltool.cli import app

    base = tmp_path_factory.mktemp("shipped")
    fake_mnist_cache(base / "keras")
    configs = [str(path) for path in SHIPPED_CONFIGS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(base / "keras"))
        result = CliRunner().invoke(app, ["smoke", *configs, "--runs-dir", str(base / "runs")])
    runs = {}
    for run in sorted((base / "runs").glob("*")):
        source = json.loads((run / "run.json").read_text())["config_source"]
        runs[Path(source).stem] = run
    return ShippedSmoke(result, runs, base / "keras")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(data_dict_or_text, name="exp.yaml") -> Path`` inside tmp_path."""

    def write(content: dict[str, Any] | str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the dltool app in-process (no TensorFlow start-up per call)."""
    from dltool.cli import app

    runner = CliRunner()

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return invoke
