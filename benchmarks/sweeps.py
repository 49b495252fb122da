"""Benchmark: what Optuna brings to sweeps, measured on this machine.

- quality: on a learning-rate / width / dropout search of student_pass_rule.yaml (a real
  optimum: too low a rate underfits, too high diverges), the best validation loss after N
  trials, TPE against random, median over seeds. Target: TPE reaches random's 30-trial best
  in at most 15 trials.
- pruning: the same TPE search with median pruning: the share of epochs it saves, and the
  best validation loss it costs. Target: at least 40 % of epochs saved, the best within noise.
- throughput: trials per hour with 1 and 2 workers (``--jobs``), the study in the sweep
  folder's journal and in PostgreSQL (a server started here, tests/pgserver.py).

Quality and pruning run every sweep in this process (``dltool sweep`` with one worker: the
same code, TensorFlow imported once); throughput runs whole ``dltool sweep`` processes.

    .venv/bin/python benchmarks/sweeps.py [--seeds 5] [--trials 30] [--only quality,pruning,throughput]

Writes benchmarks/results-sweeps.md. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # pgserver: the same PostgreSQL server the tests use
DLTOOL = str(Path(sys.executable).parent / "dltool")
BASE = REPO / "configs" / "student_pass_rule.yaml"

# A small, quick version of the shipped tpe_pruned.yaml search (300 rows to train on, 6 epochs
# a trial) over wider ranges, so that much of the space is poor: too low a learning rate does
# not learn in 6 epochs, too high a one is unstable, too much dropout or too few units underfit.
OVERRIDES = [
    "data.n_train=375",  # 300 to train on, 75 to validate
    "data.n_test=100",
    "training.epochs=6",
    "training.early_stopping=null",
    "training.save_best=null",
]
PARAMS = {
    "training.optimizer.learning_rate": {"log_uniform": [1.0e-5, 1.0]},
    "model.layers[1].units": {"int_uniform": [1, 64]},
    "model.layers[2].rate": {"uniform": [0.0, 0.9]},
}
EPOCHS = 6
PRUNE = {"type": "median", "min_epochs": 2, "startup_trials": 5}


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) when the part started"


def run_sweep(folder: Path, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a sweep in this process with one worker; each trial's status, value and epochs."""
    from rich.console import Console

    from dltool import sweep as sweeps

    path = folder / f"{sweep['name']}.yaml"
    path.write_text(yaml.safe_dump({"base": str(BASE), "metric": "validation.loss", "overrides": OVERRIDES, **sweep}))  # fmt: skip
    quiet = Console(file=io.StringIO())
    with sweeps.open_sweep(path, folder / "runs", resume=False) as directory:
        sweeps.run(directory, 1, quiet)
    trials = []
    for number in sorted(directory.results):
        outcome = directory.results[number]
        info = json.loads((Path(outcome["run"]) / "run.json").read_text()) if outcome.get("run") else {}  # fmt: skip
        trials.append({
            "trial": number,
            "status": outcome["status"],
            "value": directory.metric_value(outcome, "validation.loss"),
            "epochs": int(info.get("epochs_completed") or 0),
        })  # fmt: skip
    return trials


def best_after(trials: list[dict[str, Any]], n: int) -> float:
    """The best (lowest) validation loss among the completed trials of the first ``n``."""
    done = [t["value"] for t in trials[:n] if t["status"] == "completed" and t["value"] is not None]
    return min(done) if done else float("inf")


def _count(n: float, trials: int) -> str:
    """A number of trials, ``>N`` for a search that never got there."""
    return f">{trials}" if n > trials else f"{n:g}"


def trials_to_reach(trials: list[dict[str, Any]], target: float) -> int | None:
    for n in range(1, len(trials) + 1):
        if best_after(trials, n) <= target:
            return n
    return None


def _one_search(job: tuple[str, int, int]) -> tuple[str, int, list[dict[str, Any]]]:
    """One (search, seed) sweep in a fresh folder: what a pool process runs."""
    kind, seed, trials = job
    search = {"trials": trials, "seed": seed, "params": PARAMS}
    sweep: dict[str, Any] = {"name": f"{kind.replace('+', '-')}-{seed}"}
    if kind == "random":
        sweep["random"] = search
    else:
        sweep["tpe"] = {**search, "startup_trials": 8}
    if kind == "tpe+median":
        sweep["prune"] = PRUNE
    with tempfile.TemporaryDirectory(prefix="dltool-bench-sweeps-") as scratch:
        result = run_sweep(Path(scratch), sweep)
    print(f"seed {seed} {kind}: best {best_after(result, trials):.4f}", flush=True)
    return kind, seed, result


def quality_and_pruning(seeds: int, trials: int, parts: set[str], parallel: int) -> list[str]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    lines: list[str] = []
    runs: dict[str, list[list[dict[str, Any]]]] = {"random": [], "tpe": [], "tpe+median": []}
    started = time.perf_counter()
    lines.append(f"Machine: {machine()}; {parallel} sweeps at a time, each in its own process.")
    kinds = ["random", "tpe"] + (["tpe+median"] if "pruning" in parts else [])
    jobs = [(kind, seed, trials) for seed in range(seeds) for kind in kinds]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(parallel, mp_context=context) as pool:
        done = {(kind, seed): result for kind, seed, result in pool.map(_one_search, jobs)}
    for kind in kinds:
        runs[kind] = [done[(kind, seed)] for seed in range(seeds)]
    elapsed = time.perf_counter() - started
    lines.append(
        f"Took {elapsed / 60:.1f} min for {sum(len(r) for r in runs.values())} sweeps of {trials} trials."
    )
    lines += ["", "### Search quality: best validation loss after N trials (median over seeds)", ""]
    checkpoints = [n for n in (5, 10, 15, 20, 30) if n <= trials]
    lines.append("| search | " + " | ".join(f"N={n}" for n in checkpoints) + " |")
    lines.append("|---|" + "---|" * len(checkpoints))
    for kind, sweeps_run in runs.items():
        if sweeps_run:
            cells = [f"{statistics.median(best_after(r, n) for r in sweeps_run):.4f}" for n in checkpoints]  # fmt: skip
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    reach = []
    for random_run, tpe_run in zip(runs["random"], runs["tpe"], strict=True):
        reached = trials_to_reach(tpe_run, best_after(random_run, trials))
        reach.append(reached if reached is not None else trials + 1)
    shown = ", ".join(str(n) if n <= trials else f">{trials}" for n in reach)
    lines += [
        "",
        f"Trials TPE needed to reach random's {trials}-trial best, per seed: {shown}; "
        f"median **{_count(statistics.median(reach), trials)}** (target: at most {trials // 2}).",
    ]
    if runs["tpe+median"]:
        full = sum(len(r) * EPOCHS for r in runs["tpe+median"])
        trained = sum(t["epochs"] for r in runs["tpe+median"] for t in r)
        pruned = sum(t["status"] == "pruned" for r in runs["tpe+median"] for t in r)
        bests = [best_after(r, trials) for r in runs["tpe+median"]]
        plain = [best_after(r, trials) for r in runs["tpe"]]
        lines += [
            "",
            f"### Pruning: median pruner (min_epochs {PRUNE['min_epochs']}, startup_trials {PRUNE['startup_trials']}) on the TPE search",
            "",
            "| search | trials pruned | epochs trained | epochs saved | best validation loss, median (min-max) over seeds |",
            "|---|---|---|---|---|",
            f"| tpe | 0 | {sum(t['epochs'] for r in runs['tpe'] for t in r)} of {sum(len(r) * EPOCHS for r in runs['tpe'])} | - | {statistics.median(plain):.4f} ({min(plain):.4f}-{max(plain):.4f}) |",
            f"| tpe + median pruning | {pruned} of {sum(len(r) for r in runs['tpe+median'])} | {trained} of {full} | **{1 - trained / full:.0%}** | {statistics.median(bests):.4f} ({min(bests):.4f}-{max(bests):.4f}) |",
        ]  # fmt: skip
    return lines


def _timed_sweep(folder: Path, name: str, jobs: int, storage: str | None, trials: int, env: dict[str, str]) -> float:  # fmt: skip
    """Seconds a whole `dltool sweep` process takes for a grid of ``trials`` trials."""
    sweep = {
        "name": name,
        "base": str(BASE),
        "metric": "validation.loss",
        "overrides": [*OVERRIDES, "training.epochs=10"],
        "grid": {"model.layers[1].units": list(range(8, 8 + trials))},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    command = [DLTOOL, "sweep", str(path), "--jobs", str(jobs), "--runs-dir", str(folder / "runs")]
    if storage is not None:
        command += ["--storage", storage]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **env}, timeout=1800)  # fmt: skip
    return time.perf_counter() - started


def throughput(trials: int, runs: int) -> list[str]:
    import pgserver

    lines = [f"Machine: {machine()}.", ""]
    lines.append(f"### Throughput: a grid of {trials} trials (300 training rows, 10 epochs each), whole `dltool sweep` processes, TensorFlow start-up included; median of {runs} runs, the cases alternating")  # fmt: skip
    lines += ["", "| study | workers | threads per worker | seconds, median (min-max) | trials per hour | vs 1 worker |", "|---|---|---|---|---|---|"]  # fmt: skip
    two = {
        "TF_NUM_INTRAOP_THREADS": "2",
        "OMP_NUM_THREADS": "2",
    }  # each worker as many as the machine
    with tempfile.TemporaryDirectory(prefix="dltool-bench-throughput-") as scratch, pgserver.running_server() as url:  # fmt: skip
        cases = [
            ("journal", None, 1, {}),
            ("journal", None, 2, {}),
            ("journal", None, 2, two),
            ("PostgreSQL", url, 1, {}),
            ("PostgreSQL", url, 2, {}),
            ("PostgreSQL", url, 2, two),
        ]
        seconds: dict[int, list[float]] = {index: [] for index in range(len(cases))}
        for attempt in range(runs):
            for index, (_, storage, jobs, env) in enumerate(cases):
                folder = Path(scratch) / f"{index}-{attempt}"
                folder.mkdir()
                seconds[index].append(_timed_sweep(folder, f"throughput-{index}-{attempt}", jobs, storage, trials, env))  # fmt: skip
                print(f"case {index} run {attempt}: {seconds[index][-1]:.1f} s", flush=True)
        one: dict[str, float] = {}
        for index, (where, _, jobs, env) in enumerate(cases):
            median = statistics.median(seconds[index])
            rate = 3600 * trials / median
            if jobs == 1:
                one[where] = rate
            threads = env.get("TF_NUM_INTRAOP_THREADS") or (str(max(1, (os.cpu_count() or 1) // jobs)) + " (dltool's default)" if jobs > 1 else "TensorFlow's default")  # fmt: skip
            ratio = f"**{rate / one[where]:.2f}x**" if jobs > 1 else "1.00x"
            lines.append(f"| {where} | {jobs} | {threads} | {median:.1f} ({min(seconds[index]):.1f}-{max(seconds[index]):.1f}) | {rate:.0f} | {ratio} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--throughput-trials", type=int, default=12)
    parser.add_argument("--runs", type=int, default=2, help="runs of each throughput case")
    parser.add_argument("--only", default="quality,pruning,throughput")
    parser.add_argument(
        "--parallel", type=int, default=3, help="sweeps at a time (quality, pruning)"
    )
    parser.add_argument("--output", type=Path, default=HERE / "results-sweeps.md")
    arguments = parser.parse_args()
    parts = set(arguments.only.split(","))
    lines = [
        "# Benchmarks: sweeps with Optuna (search quality, pruning, throughput)",
        "",
        f"Written by `benchmarks/sweeps.py --seeds {arguments.seeds} --trials {arguments.trials} --only {arguments.only}`. "
        "Search: `student_pass_rule.yaml` on 300 training rows, 6 epochs, over learning rate "
        "(log-uniform 1e-5..1), first-layer width (1..64) and dropout (0..0.9); "
        "metric validation.loss; TPE with 8 random start-up trials. Each trial's training "
        "seed is the base's, so a point always gives the same loss: the seeds vary the samplers only.",
        "",
    ]  # fmt: skip
    if parts & {"quality", "pruning"}:
        lines += quality_and_pruning(arguments.seeds, arguments.trials, parts, arguments.parallel)
        lines.append("")
    if "throughput" in parts:
        lines += throughput(arguments.throughput_trials, arguments.runs)
    arguments.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
