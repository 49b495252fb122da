"""Sweeps: grid and random search, parallel trials, failures, interruption and resume."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CONFIGS, tiny_config
from dltool import sweep as sweeps
from dltool.config import load_config
from dltool.errors import ConfigError, TrainingError
from dltool.sweep import load_sweep, plan

Cli = Callable[..., Any]
DLTOOL = Path(sys.executable).with_name("dltool")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _files(tmp_path: Path, sweep: dict[str, Any], **config: Any) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_config(**config)))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", **sweep}))
    return path


@pytest.mark.slow
def test_grid_sweep_with_two_jobs(run_cli: Cli, tmp_path: Path) -> None:
    path = _files(tmp_path, {"metric": "validation.accuracy", "grid": {"model.layers[1].units": [2, 4], "training.batch_size": [16, 32]}}, data={"validation_split": 0.25})  # fmt: skip
    result = run_cli("sweep", path, "--jobs", "2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr + result.stdout
    (folder,) = (tmp_path / "runs").iterdir()
    rows = _rows(folder / "trials.csv")
    assert [(r["model.layers[1].units"], r["training.batch_size"]) for r in rows] == [
        ("2", "16"),
        ("2", "32"),
        ("4", "16"),
        ("4", "32"),
    ]
    assert {r["status"] for r in rows} == {"completed"}
    assert len(list((folder / "runs").iterdir())) == 4  # each trial is a normal run folder
    assert list(rows[0])[4:-4] == [
        "status",
        *(f"{s}.{m}" for s in ("train", "validation", "test") for m in ("loss", "accuracy")),
        "gap.loss",
        "gap.accuracy",
    ]  # every final split.metric, so the train/validation gap is in the table
    for number, row in enumerate(rows, start=1):
        run = folder / "runs" / row["run"]
        assert row["run"].startswith(f"tiny-trial{number}-")  # each trial's own run name
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        metrics = json.loads((run / "metrics.json").read_text())
        for split in ("train", "validation", "test"):
            for name, value in metrics[split].items():
                assert float(row[f"{split}.{name}"]) == pytest.approx(value)
        gap = float(row["validation.loss"]) - float(row["train.loss"])
        assert float(row["gap.loss"]) == pytest.approx(gap)
    best = json.loads((folder / "best.json").read_text())
    assert best["value"] == max(
        float(r["validation.accuracy"]) for r in rows
    )  # accuracy: higher is better
    assert (folder / "sweep.png").stat().st_size > 1000
    assert "best: trial" in result.stdout


@pytest.mark.slow
def test_failing_trial_does_not_stop_the_others(run_cli: Cli, tmp_path: Path) -> None:
    model = {
        "input_shape": [3],
        "layers": [
            {"type": "normalization"},
            {"type": "dense", "units": 8},
            {"type": "dense", "units": 1},
        ],
    }
    training = {
        "loss": "mean_squared_error",
        "metrics": [],
        "epochs": 2,
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
    }
    path = _files(tmp_path, {"metric": "test.loss", "grid": {"training.optimizer.learning_rate": [10.0, 0.001]}}, model=model, training=training)  # fmt: skip
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3
    (folder,) = (tmp_path / "runs").iterdir()
    rows = _rows(folder / "trials.csv")
    assert [r["status"] for r in rows] == ["failed", "completed"]
    assert rows[0]["error"].startswith("training: the loss became")
    failed_run = json.loads((folder / "runs" / rows[0]["run"] / "run.json").read_text())
    assert failed_run["status"] == "failed"  # the failed trial's own folder, not trial 2's
    assert json.loads((folder / "best.json").read_text())["trial"] == 2


def test_random_search_is_seeded_and_in_range(tmp_path: Path) -> None:
    path = _files(tmp_path, {"random": {"trials": 6, "seed": 4, "params": {"training.optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0e-1]}, "model.layers[1].units": {"choice": [2, 4, 8]}, "training.epochs": {"int_uniform": [1, 3]}}}, "repeats": 2})  # fmt: skip
    trials = plan(load_sweep(path), base_seed=10)
    assert len(trials) == 12
    assert [t.seed for t in trials[:4]] == [10, 11, 10, 11]
    assert trials[0].values == trials[1].values
    rates = [t.values["training.optimizer.learning_rate"] for t in trials]
    assert all(1e-4 <= r <= 1e-1 for r in rates)
    assert {t.values["model.layers[1].units"] for t in trials} <= {2, 4, 8}
    assert [t.values for t in plan(load_sweep(path), base_seed=10)] == [t.values for t in trials]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        pytest.param(
            {
                "grid": {"training.epochs": [1]},
                "random": {"trials": 1, "params": {"seed": {"choice": [1]}}},
            },
            r"give exactly one of grid, random and tpe \(received grid and random\)$",
            id="both",
        ),
        pytest.param({"repeats": 2}, r"give exactly one of grid, random and tpe$", id="no-search"),
        pytest.param(
            {"bayes": {"trials": 2, "params": {"seed": {"choice": [1]}}}},
            r"bayes: unknown key",
            id="unknown-search",
        ),
        pytest.param(
            {
                "tpe": {
                    "trials": 2,
                    "params": {"training.optimizer.learning_rate": {"log_uniform": [0.1, 0.001]}},
                }
            },
            r"tpe\.params\['training\.optimizer\.learning_rate'\]: inverted range \(received \[0\.1, 0\.001\]; expected \[LOW, HIGH\] with LOW <= HIGH\)$",
            id="inverted-log-uniform",
        ),
        pytest.param(
            {"random": {"trials": 2, "params": {"model.layers[2].rate": {"uniform": [0.5, 0.1]}}}},
            r"inverted range \(received \[0\.5, 0\.1\]",
            id="inverted-uniform",
        ),
        pytest.param(
            {"tpe": {"trials": 2, "params": {"training.epochs": {"int_uniform": [3, 1]}}}},
            r"inverted range \(received \[3, 1\]",
            id="inverted-int-uniform",
        ),
        pytest.param(
            {"grid": {"training.epochs": [1]}, "prune": {"type": "medain"}},
            r"prune\.type: unknown type, did you mean 'median'\? \(received 'medain'; expected one of median, successive_halving, hyperband\)$",
            id="unknown-prune",
        ),
        pytest.param(
            {"grid": {"training.epochs": [1]}, "prune": {"type": "median", "min_epochs": 0}},
            r"prune\.median\.min_epochs: out of range|prune.*min_epochs",
            id="prune-min-epochs",
        ),
        pytest.param(
            {
                "tpe": {"trials": 2, "params": {"training.epochs": {"int_uniform": [1, 3]}}},
                "repeats": 2,
            },
            r"repeats: tpe trains each point once \(received repeats: 2\)",
            id="tpe-repeats",
        ),
        pytest.param(
            {"tpe": {"trials": 2, "params": {"model.input_shape": {"choice": [[3], [4]]}}}},
            r"tpe choices must be numbers, strings, booleans or null \(received \[3\]\)",
            id="tpe-list-choice",
        ),
        pytest.param(
            {"grid": {"training.epochs": [1]}, "metric": "accuracy"},
            r"metric: not allowed \(received 'accuracy'; expected a split and a metric, "
            r"e\.g\. validation\.loss or test\.accuracy\)$",
            id="metric",
        ),
        pytest.param(
            {"grid": {"training.epochs": [1]}, "base": "nope.yaml"},
            r"base: nope\.yaml not found",
            id="no-base",
        ),
        pytest.param(
            {"grid": {"training..epochs": [1]}},
            r"--set training\.\.epochs=0: expected KEY=VALUE",
            id="bad-key",
        ),
        pytest.param(
            {"grid": {"training.epochs": [1]}, "jobs": 2}, r"jobs: unknown key", id="unknown-key"
        ),
        pytest.param(
            {"random": {"trials": 2, "params": {"training.epochs": {"int_uniform": [1, 3.0]}}}},
            r"random\.params\['training\.epochs'\]: wrong type \(received 3\.0; expected an integer\)$",
            id="float-in-int-uniform",
        ),
        pytest.param(
            {"random": {"trials": 2, "params": {"training.epochs": {"intuniform": [1, 3]}}}},
            r"random\.params\['training\.epochs'\]: not a distribution \(received a mapping of "
            r"intuniform; expected a mapping with one key of choice, uniform, log_uniform or "
            r"int_uniform, e\.g\. \{log_uniform: \[1\.0e-4, 1\.0e-1\]\}\)$",
            id="unknown-distribution",
        ),
        pytest.param(
            {"random": {"trials": 2.0, "params": {"seed": {"choice": [1]}}}},
            r"random\.trials: wrong type \(received 2\.0; expected an integer\)$",
            id="float-trials",
        ),
    ],
)
def test_bad_sweep_files(tmp_path: Path, sweep: dict[str, Any], message: str) -> None:
    path = _files(tmp_path, sweep)
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    (line,) = caught.value.lines  # one mistake, one line
    assert re.search(message, line), line


def test_trial_keys_must_fit_the_base(run_cli: Cli, tmp_path: Path) -> None:
    path = _files(tmp_path, {"grid": {"training.epochz": [1, 2]}})
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert (
        "--set training.epochz=1: training.epochz: unknown key, did you mean 'epochs'?"
        in result.stderr
    )
    assert not (tmp_path / "runs").exists()


SHIPPED_SWEEPS = sorted((CONFIGS / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=[p.stem for p in SHIPPED_SWEEPS])
def test_every_trial_of_a_shipped_sweep_is_a_valid_config(path: Path) -> None:
    sweep = load_sweep(path)
    trials = plan(sweep, load_config(Path(sweep.base), sweep.overrides).seed)
    for trial in trials:
        load_config(Path(sweep.base), trial.assignments(sweep.overrides))


def test_readme_sweep_files_are_the_shipped_ones() -> None:
    """The README's sweep examples are the files in configs/sweeps/, which the test above checks."""
    readme = (CONFIGS.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n# (configs/sweeps/\S+)\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) >= 2
    for name, text in blocks:
        assert yaml.safe_load(text) == yaml.safe_load((CONFIGS.parent / name).read_text()), name


def test_shipped_regularization_sweep_plans() -> None:
    sweep = load_sweep(CONFIGS / "sweeps" / "regularization.yaml")
    trials = plan(sweep, base_seed=5)
    assert len(trials) == 9
    assert trials[0].values == {"model.layers[2].rate": 0.0, "training.regularization.l2": 0.0}


@pytest.mark.slow
def test_interrupted_sweep_resumes(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) to a running `dltool sweep`, then --resume."""
    path = _files(tmp_path, {"grid": {"training.batch_size": [8, 16, 24, 32, 40, 48]}}, training={"epochs": 5}, data={"n_train": 2000})  # fmt: skip
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [str(DLTOOL), "sweep", str(path), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    table = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(runs.glob("*/trials.csv"))
        if found and len(_rows(found[0])) >= 1:
            table = found[0]
            break
        time.sleep(0.05)
    assert table is not None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "continue with: dltool sweep" in stderr
    finished = [r for r in _rows(table) if r["status"] == "completed"]
    assert 1 <= len(finished) < 6
    # The journal has what trials.csv says, and the interrupted trial waits to be trained again.
    attempts = _journal_study(table.parent).trials
    outcomes = [t.user_attrs.get("dltool.outcome", {}).get("status") for t in attempts]
    assert outcomes.count("completed") == len(finished)
    assert sum(t.state.name == "WAITING" for t in attempts) == 6 - len(finished)
    done = subprocess.run(
        [str(DLTOOL), "sweep", str(table.parent), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = _rows(table)
    assert [r["status"] for r in rows] == ["completed"] * 6
    assert [r["run"] for r in rows[: len(finished)]] == [
        r["run"] for r in finished
    ]  # kept, not retrained
    completed_runs = [
        p
        for p in (table.parent / "runs").iterdir()
        if json.loads((p / "run.json").read_text())["status"] == "completed"
    ]
    assert len(completed_runs) == 6


def test_failed_trial_gets_its_own_folder_not_a_parallel_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial that fails while another trial makes its folder is credited with its own."""
    runs = tmp_path / "runs"

    def train(*args: Any, runs_dir: str, name: str, **kwargs: Any) -> Any:
        (Path(runs_dir) / f"{name}-20260101-000000").mkdir(parents=True)
        (Path(runs_dir) / "tiny-trial9-20260101-000001").mkdir()  # a parallel trial's, made later
        raise TrainingError("training: the loss became nan")

    monkeypatch.setattr("dltool.api.train", train)
    outcome = sweeps.run_trial("base.yaml", [], str(runs), "tiny-trial1")
    assert outcome["status"] == "failed"
    assert Path(outcome["run"]).name == "tiny-trial1-20260101-000000"


def _outcome(**metrics: dict[str, float]) -> dict[str, Any]:
    return {"status": "completed", "run": "r", "metrics": metrics, "duration_s": 1.0}


def test_trials_csv_columns_cover_every_metric_of_every_trial(tmp_path: Path) -> None:
    path = _files(tmp_path, {"metric": "validation.auc", "grid": {"training.epochs": [1, 2]}})
    sweep = load_sweep(path)
    directory = sweeps.SweepDir(tmp_path, sweep, plan(sweep, base_seed=0), "tiny")
    directory.results[1] = _outcome(
        train={"accuracy": 0.9, "loss": 0.2}, validation={"loss": 0.5, "accuracy": 0.7}
    )
    directory.results[2] = _outcome(train={"loss": 0.1, "auc": 0.8}, test={"loss": 0.6})
    header, rows = directory.rows()
    assert header[4:-4] == [
        *("train.loss", "train.accuracy", "train.auc"),
        *("validation.loss", "validation.accuracy", "validation.auc"),
        *("test.loss", "test.auc"),  # the sweep's own metric always has its three columns
        *("gap.loss", "gap.accuracy", "gap.auc"),
    ]
    first = dict(zip(header, rows[0], strict=True))
    assert first["gap.loss"] == pytest.approx(0.3)  # validation - train: lower is better
    assert first["gap.accuracy"] == pytest.approx(0.2)  # train - validation: higher is better
    assert first["train.auc"] is None
    assert directory.run_name(directory.trials[0]) == "tiny-trial1"


def _run_folders(sweep_folder: Path) -> dict[str, str]:
    """Each run folder's name and run.json status."""
    return {
        p.name: json.loads((p / "run.json").read_text())["status"]
        for p in (sweep_folder / "runs").iterdir()
    }


@pytest.mark.slow
def test_parallel_sweep_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT to the process group, as a terminal sends it) to `--jobs 2`:
    no trial starts after it, every run folder is accounted for, --resume finishes."""
    path = _files(tmp_path, {"grid": {"training.batch_size": [8, 9, 10, 11, 12, 13]}}, data={"n_train": 1000})  # fmt: skip
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [str(DLTOOL), "sweep", str(path), "--jobs", "2", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    started: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None and len(started) < 3:
        started = list(runs.glob("*/runs/*/run.json"))  # trial 3 has begun training
        time.sleep(0.05)
    assert len(started) >= 3, process.communicate()
    last_started = max(int(p.parent.name.split("-")[1].removeprefix("trial")) for p in started)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (folder,) = runs.iterdir()
    folders = _run_folders(folder)
    numbers = {int(name.split("-")[1].removeprefix("trial")) for name in folders}
    assert max(numbers) <= last_started + 1, folders  # at most the one trial about to start
    rows = {r["run"]: r["status"] for r in _rows(folder / "trials.csv")}
    assert rows == folders  # every folder is listed, with the status its run.json has
    assert set(folders.values()) <= {"completed", "interrupted"}
    kept = {name for name, status in folders.items() if status == "completed"}
    done = subprocess.run(
        [str(DLTOOL), "sweep", str(folder), "--resume", "--jobs", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows_after = _rows(folder / "trials.csv")
    assert [r["status"] for r in rows_after] == ["completed"] * 6
    assert kept <= {r["run"] for r in rows_after}  # completed trials were not retrained
    after = _run_folders(folder)
    assert sorted(after.values()).count("completed") == 6
    assert {n: s for n, s in after.items() if n in folders} == folders  # interrupted stay so


def _journal_study(folder: Path) -> Any:
    """The study in a sweep folder's journal file, read as another process would."""
    from dltool.sweep import study as studies

    sweep = load_sweep(folder / "sweep.yaml", recorded=True)
    return studies.load(studies.open_storage(str(folder / "study.journal")), sweep, epochs=1)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.slow
def test_a_killed_worker_fails_its_trial_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A worker process killed mid-trial (as the out-of-memory killer would): its trial is
    failed, the executor is replaced, and the trials not yet started still run."""
    path = _files(tmp_path, {"grid": {"training.batch_size": [8, 9, 10, 11]}}, data={"n_train": 1000}, training={"epochs": 3})  # fmt: skip
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [str(DLTOOL), "sweep", str(path), "--jobs", "2", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if list(runs.glob("*/runs/*/run.json")):  # a trial is training in a worker
            break
        time.sleep(0.05)
    workers = [p for p in _children(process.pid) if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]  # fmt: skip
    assert workers, process.communicate()
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 3, stderr  # some trial failed; the sweep itself ended
    (folder,) = runs.iterdir()
    rows = _rows(folder / "trials.csv")
    assert len(rows) == 4, rows
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed, rows
    assert all("worker process died" in r["error"] for r in failed)
    assert rows[-1]["status"] == "completed"  # started after the kill, in a new executor
    assert "Traceback" not in stderr


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (``Z``: a zombie); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_die_with_a_killed_sweep(run_cli: Cli, tmp_path: Path) -> None:
    """`kill -9` of `dltool sweep --jobs 2`: its workers and the resource tracker end
    within seconds, the trials' folders say orphaned (not running), --resume finishes."""
    path = _files(tmp_path, {"grid": {"training.batch_size": [8, 9, 10]}}, data={"n_train": 1000}, training={"epochs": 100})  # fmt: skip
    runs = tmp_path / "runs"
    # No pipes: workers that outlived it would hold them open.
    process = subprocess.Popen(
        [str(DLTOOL), "sweep", str(path), "--jobs", "2", "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    children: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(runs.glob("*/runs/*/history.csv"))) == 2:  # both workers training
                break
            time.sleep(0.1)
        children = _children(process.pid)
        tracker = [p for p in children if "resource_tracker" in Path(f"/proc/{p}/cmdline").read_text()]  # fmt: skip
        assert len(children) == 3, (children, process.poll())  # 2 workers, the tracker
        assert len(tracker) == 1, children
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_state(p) not in (None, "Z") for p in children):
            time.sleep(0.1)
        assert [p for p in children if _state(p) not in (None, "Z")] == []
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    (folder,) = runs.iterdir()
    # The journal survived the SIGKILL: the two trials it was training still say running.
    states = sorted(t.state.name for t in _journal_study(folder).trials)
    assert states == ["RUNNING", "RUNNING", "WAITING"], states
    listed = json.loads(run_cli("runs", "--runs-dir", folder / "runs", "--json").stdout)
    assert len(listed) == 2
    for row in listed:
        info = json.loads((Path(row["path"]) / "run.json").read_text())
        assert (row["status"], info["error"].split(":")[0]) == ("interrupted", "orphaned"), info
        assert f"dltool sweep {folder} --resume" in info["error"]
    # The base read again with 1 epoch, so that the re-run is quick; in this process.
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_config(data={"n_train": 1000})))
    resumed = run_cli("sweep", folder, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert [r["status"] for r in _rows(folder / "trials.csv")] == ["completed"] * 3


@pytest.mark.parametrize(
    ("metric", "mode", "best"),
    [
        ("validation.accuracy", "auto", 2),
        ("validation.top_3_accuracy", "auto", 2),
        ("validation.loss", "auto", 3),
        ("test.mean_absolute_error", "auto", 3),
        ("validation.accuracy", "min", 3),
        ("validation.loss", "max", 2),
    ],
)
def test_best_trial_follows_the_metrics_direction(
    tmp_path: Path, metric: str, mode: str, best: int
) -> None:
    path = _files(tmp_path, {"metric": metric, "mode": mode, "grid": {"training.epochs": [1, 2, 3, 4]}})  # fmt: skip
    sweep = load_sweep(path)
    directory = sweeps.SweepDir(tmp_path, sweep, plan(sweep, 0), "tiny")
    split, _, name = metric.partition(".")
    # Trial 2 has the highest value, trial 3 the lowest, trial 4 failed with a better one.
    for number, value in [(1, 0.5), (2, 0.9), (3, 0.1)]:
        directory.results[number] = {"status": "completed", "metrics": {split: {name: value}}}
    directory.results[4] = {"status": "failed", "metrics": {split: {name: 100.0 if best == 2 else -1.0}}}  # fmt: skip
    chosen = directory.best()
    assert chosen is not None
    assert (chosen["trial"], chosen["value"]) == (best, {1: 0.5, 2: 0.9, 3: 0.1}[best])


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("sweep.yaml", r"sweep\.yaml: line \d+"),
        ("base.yaml", r"base\.yaml: training\.epochs: out of range"),
    ],
)
def test_resume_of_a_sweep_whose_files_no_longer_parse_is_refused(
    run_cli: Cli, tmp_path: Path, broken: str, message: str
) -> None:
    path = _files(tmp_path, {"grid": {"training.epochs": [1, 2]}})
    with sweeps.open_sweep(path, tmp_path / "runs", resume=False) as directory:
        folder = directory.path
    if broken == "sweep.yaml":
        (folder / "sweep.yaml").write_text("name: s\ngrid: [unclosed\n")
    else:
        (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_config(training={"epochs": 0})))
    result = run_cli("sweep", folder, "--resume", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert "internal error" not in result.stderr
    assert not (folder / "trials.csv").exists()


@pytest.mark.slow
def test_a_pruned_trial_has_a_complete_run_folder_and_status_pruned_everywhere(
    run_cli: Cli, tmp_path: Path
) -> None:
    """Real training: a hopeless learning rate is stopped after its first epoch by the median
    pruner; its folder has everything a run has, for the epoch it trained."""
    from dltool.rundir import RunDir

    training = {"epochs": 3, "optimizer": {"name": "adam", "learning_rate": 0.01}}
    grid = {"training.optimizer.learning_rate": [0.05, 0.00001]}
    prune = {"type": "median", "min_epochs": 1, "startup_trials": 1}
    path = _files(tmp_path, {"grid": grid, "prune": prune}, training=training, data={"validation_split": 0.25})  # fmt: skip
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr + result.stdout
    (folder,) = (tmp_path / "runs").iterdir()
    rows = _rows(folder / "trials.csv")
    assert [r["status"] for r in rows] == ["completed", "pruned"]
    run = RunDir(folder / "runs" / rows[1]["run"])
    info = run.info()
    assert (info["status"], info["pruned_after_epoch"], info["epochs_completed"]) == (
        "pruned",
        1,
        1,
    )
    assert run.missing_files() == []  # history, model.keras at that epoch, metrics, plots
    assert len(_rows(run.path / "history.csv")) == 1
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert float(rows[1]["validation.loss"]) == pytest.approx(metrics["validation"]["loss"])
    listed = json.loads(run_cli("runs", "--runs-dir", folder / "runs", "--json").stdout)
    assert sorted(r["status"] for r in listed) == ["completed", "pruned"]
    assert json.loads((folder / "best.json").read_text())["trial"] == 1
