"""Sweeps on Ray (--ray): a real two-node cluster on this machine, one per module.

``ray.cluster_utils.Cluster`` starts a head and a worker node (1 CPU each, so two trials
run at once, one on each node), as Ray's own tests do. Every test here uses that one
cluster (module fixture; the module runs on one pytest worker, conftest.py's SHARED_UNITS);
the node-loss test removes the worker node, so it comes last. The fixture connects once: each test's ``dltool sweep --ray`` finds the
connection and keeps it, as it would in a notebook (the connection itself:
test_an_unreachable_cluster_is_one_line_and_no_folder and the benchmark).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from conftest import tiny_config
from dltool.errors import InputError
from dltool.sweep import cluster as on_ray
from dltool.sweep.folder import JOURNAL
from dltool.sweep.study import open_storage

Cli = Callable[..., Any]
OBJECT_STORE = 80 * 1024**2  # bytes per node; Ray's default is 30% of memory


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _files(tmp_path: Path, grid: dict[str, list[Any]], prune: dict[str, Any] | None = None, **config: Any) -> Path:  # fmt: skip
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_config(**config)))
    path = tmp_path / "sweep.yaml"
    sweep = {"name": "s", "base": "base.yaml", "metric": "validation.accuracy", "grid": grid}
    if prune is not None:
        sweep["prune"] = prune
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and a worker node, 1 CPU each, no dashboard, small object stores."""
    import ray
    from ray.cluster_utils import Cluster

    started = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE,
        },
    )
    started.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    started.wait_for_nodes()
    # One connection for the module (dltool keeps a connection it finds): Ray's worker
    # processes, with TensorFlow imported, serve every test instead of starting anew.
    ray.init(address=started.address, logging_level="ERROR", log_to_driver=False)
    yield started
    if ray.is_initialized():
        ray.shutdown()
    started.shutdown()


def _node_ids(cluster: Any) -> dict[str, str]:
    """head / worker -> the start of its node id, as trials.csv's node column has it."""
    worker = next(n for n in cluster.worker_nodes)
    return {
        "head": cluster.head_node.node_id[: on_ray.NODE_ID_CHARACTERS],
        "worker": worker.node_id[: on_ray.NODE_ID_CHARACTERS],
    }


def _when(condition: Callable[[], bool], then: Callable[[], None], seconds: float = 120) -> threading.Thread:  # fmt: skip
    """Run ``then`` in a thread as soon as ``condition`` holds."""

    def watch() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                then()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _running_trials(runs: Path) -> int:
    """How many trial folders under ``runs/*-sweep-*/runs/`` have finished an epoch."""
    return sum(1 for _ in runs.glob("*/runs/*/history.csv"))


# -------------------------------------------- without a cluster (first: none is started yet)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cluster_is_one_line_and_no_folder(run_cli: Cli, tmp_path: Path) -> None:
    path = _files(tmp_path, {"model.layers[1].units": [2, 4]})
    address = f"127.0.0.1:{_free_port()}"
    started = time.perf_counter()
    result = run_cli("sweep", path, "--ray", address, "--runs-dir", tmp_path / "runs")
    assert time.perf_counter() - started < on_ray.CONNECT_TIMEOUT_S + 5
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: --ray {address}: cannot reach the Ray cluster")
    assert not (tmp_path / "runs").exists()


def test_without_ray_it_says_how_to_install(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _files(tmp_path, {"model.layers[1].units": [2, 4]})
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = run_cli("sweep", path, "--ray", "local", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr == "error: --ray: Ray is not installed (install it with: pip install 'dltool[ray]')\n"  # fmt: skip
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--ray", "local", "--jobs", "2"],
            "--ray: the cluster's room sets how many trials run at once (received --jobs 2",
        ),
        (["--cpus-per-trial", "2"], "--cpus-per-trial and --gpus-per-trial go with --ray ADDRESS"),
        (["--ray", "nohost"], "--ray: expected HOST:PORT of a Ray cluster's head"),
        (["--ray", "local", "--cpus-per-trial", "0"], "--ray: a trial needs some room"),
    ],
    ids=["jobs", "cpus-without-ray", "no-port", "no-room"],
)
def test_ray_option_refusals(run_cli: Cli, tmp_path: Path, arguments: list[str], message: str) -> None:  # fmt: skip
    path = _files(tmp_path, {"model.layers[1].units": [2, 4]})
    result = run_cli("sweep", path, *arguments, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_run_folder_travels_as_an_archive(tmp_path: Path) -> None:
    run = tmp_path / "node" / "tiny-trial1-20260101-000000"
    (run / "checkpoint").mkdir(parents=True)
    (run / "run.json").write_text('{"status": "completed"}')
    (run / "checkpoint" / "latest.json").write_text("{}")
    back = tmp_path / "sweep" / "runs"
    back.mkdir(parents=True)
    folder = on_ray.unpack_run(on_ray.pack_run(run), back)
    assert folder == back / run.name
    assert (folder / "run.json").read_text() == '{"status": "completed"}'
    assert (folder / "checkpoint" / "latest.json").is_file()
    with pytest.raises(InputError, match="the name is taken"):
        on_ray.unpack_run(on_ray.pack_run(run), back)
    assert [p.name for p in back.iterdir()] == [run.name]  # no unpacking folder left behind


# ----------------------------------------------------------------- on the cluster


@pytest.mark.slow
def test_trials_land_on_both_nodes_come_back_and_equal_a_local_run(
    cluster: Any, run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = {"model.layers[1].units": [2, 4], "training.batch_size": [16, 32]}
    # pruning that never prunes (fewer trials than startup_trials) still records each epoch's
    # value in the study, through the pruning actor on this machine
    prune = {"type": "median", "min_epochs": 1, "startup_trials": 10}
    path = _files(tmp_path, grid, prune, data={"validation_split": 0.25}, training={"epochs": 2})
    # no marker: every node acts as if it did not see the sweep folder, and sends each
    # trial's folder back as an archive (what nodes of other machines do)
    monkeypatch.setattr(on_ray, "_write_marker", lambda path: None)
    result = run_cli("sweep", path, "--ray", cluster.address, "--runs-dir", tmp_path / "ray")
    assert result.exit_code == 0, result.stderr + result.stdout
    local = run_cli("sweep", path, "--runs-dir", tmp_path / "local")
    assert local.exit_code == 0, local.stderr

    (ray_folder,) = (tmp_path / "ray").iterdir()
    (local_folder,) = (tmp_path / "local").iterdir()
    ray_rows, local_rows = _rows(ray_folder / "trials.csv"), _rows(local_folder / "trials.csv")
    assert {r["node"] for r in ray_rows} == set(_node_ids(cluster).values())  # both nodes
    assert "node" not in local_rows[0]
    metrics = [c for c in local_rows[0] if c.split(".")[0] in ("train", "validation", "test", "gap")]  # fmt: skip
    assert len(metrics) == 8
    for ours, theirs in zip(ray_rows, local_rows, strict=True):
        assert ours["status"] == theirs["status"] == "completed"
        for column in metrics:  # the same seeds and order: the same numbers
            assert float(ours[column]) == pytest.approx(float(theirs[column]), abs=1e-6), column
        run = ray_folder / "runs" / ours["run"]  # came back into the sweep folder
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        assert (run / "model.keras").is_file()
    assert json.loads((ray_folder / "best.json").read_text())["trial"] == json.loads((local_folder / "best.json").read_text())["trial"]  # fmt: skip
    assert not list((ray_folder / "runs").glob(".dltool-ray-*"))
    study = optuna.load_study(study_name="s", storage=open_storage(str(ray_folder / JOURNAL)))
    assert [sorted(t.intermediate_values) for t in study.trials] == [[1, 2]] * 4


@pytest.mark.slow
def test_ctrl_c_cancels_the_trials_and_resume_finishes_them(
    cluster: Any, run_cli: Cli, tmp_path: Path
) -> None:
    grid = {"model.layers[1].units": [2, 4]}
    data = {"n_train": 2000, "validation_split": 0.25}
    path = _files(tmp_path, grid, data=data, training={"epochs": 8, "checkpoint_seconds": 0})
    runs = tmp_path / "runs"
    _when(lambda: _running_trials(runs) == 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    result = run_cli("sweep", path, "--ray", cluster.address, "--runs-dir", runs)
    assert result.exit_code == 130, result.stderr + result.stdout
    (folder,) = runs.iterdir()
    assert f"continue with: dltool sweep {folder} --resume --ray {cluster.address}" in result.stderr
    rows = _rows(folder / "trials.csv")
    assert [r["status"] for r in rows] == ["interrupted", "interrupted"]
    for row in rows:
        info = json.loads((folder / "runs" / row["run"] / "run.json").read_text())
        assert info["status"] == "interrupted"  # stopped at a batch, checkpoint kept

    resumed = run_cli("sweep", folder, "--resume", "--ray", cluster.address)
    assert resumed.exit_code == 0, resumed.stderr + resumed.stdout
    rows = _rows(folder / "trials.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]


@pytest.mark.slow
def test_a_lost_node_retries_its_trial_on_the_other_node(cluster: Any, run_cli: Cli, tmp_path: Path) -> None:  # fmt: skip
    """Last in this module: the worker node is removed for good."""
    ids = _node_ids(cluster)
    worker = next(n for n in cluster.worker_nodes)
    grid = {"model.layers[1].units": [2, 4]}
    data = {"n_train": 2000, "validation_split": 0.25}
    path = _files(tmp_path, grid, data=data, training={"epochs": 10})
    runs = tmp_path / "runs"
    _when(lambda: _running_trials(runs) == 2, lambda: cluster.remove_node(worker))
    result = run_cli("sweep", path, "--ray", cluster.address, "--runs-dir", runs)
    assert result.exit_code == 0, result.stderr + result.stdout
    (folder,) = runs.iterdir()
    rows = _rows(folder / "trials.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert {r["node"] for r in rows} == {ids["head"]}  # the lost trial ran again on the head
    folders = sorted((folder / "runs").iterdir())
    assert len(folders) == 3  # two completed, and the lost attempt's
    lost = [json.loads((f / "run.json").read_text()) for f in folders]
    lost = [info for info in lost if info["status"] != "completed"]
    assert len(lost) == 1
    assert lost[0]["status"] == "failed"
    assert lost[0]["error"].startswith("its Ray node was lost mid-trial; tried again as ")
