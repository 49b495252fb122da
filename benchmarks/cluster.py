"""Benchmark: sweeps on Ray against local worker processes, and mirrored training.

- overhead: the same grid of short trials with ``dltool sweep --jobs 2`` and with
  ``dltool sweep --ray ADDRESS`` on a two-node Ray cluster started here
  (``ray.cluster_utils.Cluster``, 1 CPU per node: two trials at a time either way). Per
  trial overhead = the time from a trial's end (the last write in its run folder) to the
  next trial's first batch in the same worker process (its config.yaml, written when its
  run folder is made: after its data is loaded and its model built, just before ``fit``).
  A worker's first trial is left out (it imports TensorFlow). Whole ``dltool sweep``
  processes: the Ray one connects to the cluster too.
- mirrored: seconds per epoch (the median of epochs 2..N in history.csv) of one model on
  1 device and ``training.distribute: mirrored`` on 2 logical CPU devices, each case in
  its own process (the logical devices are set before TensorFlow starts). On 2 CPU cores
  two replicas are not expected to be faster: the figure says what it costs.

    .venv/bin/python benchmarks/cluster.py [--runs 2] [--only overhead,mirrored]

Writes benchmarks/results-cluster.md. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml
from timing import user_environment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DLTOOL = str(Path(sys.executable).parent / "dltool")
OBJECT_STORE = 80 * 1024**2

# Short trials, so that what happens between them shows: 8 trials of 2 epochs on 400 rows.
BASE = {
    "name": "bench",
    "seed": 3,
    "data": {
        "source": "student",
        "n_train": 500,
        "n_test": 100,
        "labels": "rule",
        "validation_split": 0.2,
    },
    "model": {
        "input_shape": [3],
        "layers": [
            {"type": "normalization"},
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 1, "activation": "sigmoid"},
        ],
    },
    "training": {"loss": "binary_crossentropy", "epochs": 2, "batch_size": 32},
}
GRID = {"model.layers[1].units": [2, 4, 8, 16], "training.batch_size": [16, 32]}


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) when the part started"  # fmt: skip


def _sweep_files(folder: Path) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    sweep = {"name": "bench", "base": "base.yaml", "metric": "validation.loss", "grid": GRID}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return folder / "sweep.yaml"


def _gaps(sweep_folder: Path) -> list[float]:
    """Seconds from each trial's end to the next trial's first batch, per worker process."""
    by_process: dict[int, list[tuple[float, float]]] = {}
    for run in (sweep_folder / "runs").iterdir():
        if run.name.startswith("."):
            continue
        info = json.loads((run / "run.json").read_text())
        start = (run / "config.yaml").stat().st_mtime
        end = max([run.stat().st_mtime, *(p.stat().st_mtime for p in run.rglob("*"))])
        by_process.setdefault(int(info["pid"]), []).append((start, end))
    gaps = []
    for trials in by_process.values():
        trials.sort()
        gaps += [nxt[0] - previous[1] for previous, nxt in itertools.pairwise(trials)]
    return gaps


def _run_sweep(arguments: list[str], work: Path) -> tuple[float, list[float], list[str]]:
    runs = work / "runs"
    started = time.perf_counter()
    done = subprocess.run([DLTOOL, "sweep", str(_sweep_files(work)), "--runs-dir", str(runs), *arguments], capture_output=True, text=True, check=False, env=user_environment())  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dltool sweep {' '.join(arguments)} failed:\n{done.stderr[-2000:]}")
    (folder,) = runs.iterdir()
    with open(folder / "trials.csv", newline="") as handle:
        nodes = [row.get("node", "") for row in csv.DictReader(handle)]
    return took, _gaps(folder), nodes


def overhead(runs: int) -> list[str]:
    import ray
    from ray.cluster_utils import Cluster

    lines = [f"Machine: {machine()}.", ""]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": OBJECT_STORE})  # fmt: skip
    cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()
    results: dict[str, dict[str, list[float]]] = {"--jobs 2": {"wall": [], "gaps": []}, "--ray (2 nodes)": {"wall": [], "gaps": []}}  # fmt: skip
    nodes_seen: set[str] = set()
    try:
        for _ in range(runs):  # the cases alternate
            for case, arguments in (("--jobs 2", ["--jobs", "2"]), ("--ray (2 nodes)", ["--ray", cluster.address])):  # fmt: skip
                with tempfile.TemporaryDirectory() as work:
                    took, gaps, nodes = _run_sweep(arguments, Path(work))
                results[case]["wall"].append(took)
                results[case]["gaps"] += gaps
                if case.startswith("--ray"):
                    nodes_seen |= set(nodes)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    trials = len(GRID["model.layers[1].units"]) * len(GRID["training.batch_size"])
    lines += [
        f"### Per-trial overhead: {trials} trials of 2 epochs on 400 rows, 2 at a time; {runs} runs of each, alternating",
        "",
        "| executor | sweep wall time, median (s) | gaps measured | overhead per trial, median (s) | min-max (s) |",
        "|---|---|---|---|---|",
    ]
    for case, found in results.items():
        gaps = found["gaps"]
        lines.append(f"| {case} | {statistics.median(found['wall']):.1f} | {len(gaps)} | **{statistics.median(gaps):.2f}** | {min(gaps):.2f}-{max(gaps):.2f} |")  # fmt: skip
    lines += ["", f"Ray trials ran on {len(nodes_seen)} nodes.", ""]
    return lines


# One model, timed per epoch, in a process whose CPU is 1 or 2 logical devices.
CHILD = textwrap.dedent(
    """
    import json, statistics, sys
    import tensorflow as tf

    devices = int(sys.argv[3])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    import dltool

    overrides = json.loads(sys.argv[2])
    run = dltool.train(sys.argv[1], overrides=overrides, runs_dir=sys.argv[4], quiet=True)
    rows = (run.path / "history.csv").read_text().splitlines()
    column = rows[0].split(",").index("duration_s")
    seconds = [float(r.split(",")[column]) for r in rows[2:]]
    info = json.loads((run.path / "run.json").read_text())
    print(json.dumps({"epoch_s": statistics.median(seconds), "devices": info["devices"], "metrics": run.metrics}))
    """
)

# The same strategy without dltool: a plain Keras MLP on 2,000 rows (batch 32, no validation),
# to tell the strategy's own cost from dltool's.
PLAIN = textwrap.dedent(
    """
    import json, statistics, sys, time
    import tensorflow as tf

    devices = int(sys.argv[1])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    import keras, numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((2000, 3), dtype="float32")
    y = (x.sum(axis=1) > 1.5).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).prefetch(2)
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=names) if devices > 1 else tf.distribute.get_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(data, epochs=6, verbose=0, callbacks=[Timer()])
    print(json.dumps({"epoch_s": statistics.median(seconds[1:]), "devices": names[:devices]}))
    """
)

MIRRORED_CASES = {
    "student MLP (2,000 rows, batch 32)": (
        "configs/student_pass_rule.yaml",
        ["training.epochs=6", "training.early_stopping=null", "training.save_best=null"],
    ),
    "student MLP (20,000 rows, batch 256)": (
        "configs/student_pass_rule.yaml",
        [
            "data.n_train=20000",
            "training.batch_size=256",
            "training.epochs=6",
            "training.early_stopping=null",
            "training.save_best=null",
        ],
    ),
    "digits CNN (1,293 images, batch 32)": (
        "configs/digits_cnn.yaml",
        ["training.epochs=6", "training.early_stopping=null"],
    ),
    "plain Keras MLP, no dltool (2,000 rows, batch 32, no validation)": ("", []),
}


def mirrored(runs: int) -> list[str]:
    lines = [
        f"Machine: {machine()}. No GPU machine was available for this benchmark: CPU figures only.",
        "",
        f"### Seconds per epoch (median of epochs 2-6; median of {runs} runs), one process per case",
        "",
        "| model | 1 device | mirrored, 2 logical CPU devices | ratio |",
        "|---|---|---|---|",
    ]
    for name, (config, overrides) in MIRRORED_CASES.items():
        seconds: dict[str, list[float]] = {"one": [], "mirrored": []}
        for _ in range(runs):
            for case, extra, devices in (("one", [], 1), ("mirrored", ["training.distribute=mirrored"], 2)):  # fmt: skip
                with tempfile.TemporaryDirectory() as work:
                    child = [CHILD, str(REPO / config), json.dumps(overrides + extra), str(devices), work] if config else [PLAIN, str(devices)]  # fmt: skip
                    done = subprocess.run([sys.executable, "-c", *child], capture_output=True, text=True, check=False)  # fmt: skip
                if done.returncode != 0:
                    raise SystemExit(f"{name} ({case}) failed:\n{done.stderr[-2000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                assert len(result["devices"]) == devices, result["devices"]
                seconds[case].append(result["epoch_s"])
        one, two = statistics.median(seconds["one"]), statistics.median(seconds["mirrored"])
        lines.append(f"| {name} | {one:.3f} | {two:.3f} | {two / one:.2f}x |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", default="overhead,mirrored")
    arguments = parser.parse_args()
    parts = set(arguments.only.split(","))
    lines = [
        "# Benchmarks: sweeps on Ray, and mirrored training",
        "",
        "Each part below says how it was run; `--only PART` rewrites that part and keeps the others.",
        "",
    ]
    target = HERE / "results-cluster.md"
    kept = _sections(target.read_text()) if target.is_file() else {}
    for part, measure in (("overhead", overhead), ("mirrored", mirrored)):
        if part in parts:
            took = time.perf_counter()
            body = measure(arguments.runs)
            body.append(f"Written by `benchmarks/cluster.py --runs {arguments.runs}`; took {(time.perf_counter() - took) / 60:.1f} min.")  # fmt: skip
            kept[part] = "\n".join(body)
        if part in kept:
            lines += [f"{MARK}{part} -->", kept[part], ""]
    target.write_text("\n".join(lines))
    print("\n".join(lines))


MARK = "<!-- part: "  # each part's section starts so: --only PART rewrites that one alone


def _sections(text: str) -> dict[str, str]:
    found = {}
    for chunk in text.split(MARK)[1:]:
        name, _, body = chunk.partition(" -->\n")
        found[name] = body.strip()
    return found


if __name__ == "__main__":
    main()
