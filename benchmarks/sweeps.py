"""Benchmark: what Optuna brings to sweeps, measured on this machine.

- quality: on a six-setting search of student_pass_rule.yaml (optimizer, learning rate, both
  widths, dropout, L2: a real optimum in a small corner of the space), the best validation
  loss after N trials, TPE against random, median over seeds. Target: TPE reaches random's
  30-trial best in at most 15 trials (the median curve; seed by seed as a stricter view).
- pruning: the same TPE search with the median pruner and with successive halving: the share
  of epochs each saves, and the best validation loss it costs. Target: at least 40 % of
  epochs saved, the best within noise.
- throughput: trials per hour with 1 and 2 workers (``--jobs``), the study in the sweep
  folder's journal and in PostgreSQL (a server started here, tests/pgserver.py).

Quality and pruning run every sweep in this process (``dltool sweep`` with one worker: the
same code, TensorFlow imported once); throughput runs whole ``dltool sweep`` processes.

    .venv/bin/python benchmarks/sweeps.py [--seeds 10] [--trials 30] [--only quality,pruning,throughput] [--cache DIR]

Writes benchmarks/results-sweeps.md. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
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
from timing import user_environment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # pgserver: the same PostgreSQL server the tests use
DLTOOL = str(Path(sys.executable).parent / "dltool")
BASE = REPO / "configs" / "student_pass_rule.yaml"

# A small, quick search on student_pass_rule.yaml (300 rows to train on, 300 to validate
# on, 6 epochs a trial) over six settings, as a user tuning this net would search them:
# optimizer, learning rate, both layers' widths, dropout and L2. Much of the space is poor
# (too low a rate or plain SGD does not learn in 6 epochs, too high a rate is unstable, too
# much dropout or L2 underfits) and the good region is a small corner of it, which random
# search must hit in every setting at once. 300 validation rows, not 75: the loss of a point
# then depends on the point more than on its initial weights.
EPOCHS = 6
OVERRIDES = [
    "data.n_train=600",
    "data.validation_split=0.5",
    "data.n_test=100",
    f"training.epochs={EPOCHS}",
    "training.early_stopping=null",
    "training.save_best=null",
]
PARAMS = {
    "training.optimizer.name": {"choice": ["sgd", "rmsprop", "adam"]},
    "training.optimizer.learning_rate": {"log_uniform": [1.0e-5, 1.0]},
    "model.layers[1].units": {"int_uniform": [1, 64]},
    "model.layers[2].rate": {"uniform": [0.0, 0.9]},
    "model.layers[3].units": {"int_uniform": [1, 64]},
    "training.regularization.l2": {"log_uniform": [1.0e-6, 1.0e-1]},
}
STARTUP_TRIALS = 5  # TPE's random points before it models the results
PRUNERS = {
    "median": {"type": "median", "min_epochs": 1, "startup_trials": 5},
    "halving": {"type": "successive_halving", "min_epochs": 1, "reduction_factor": 3},
}


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


def _sweep_of(kind: str, seed: int, trials: int) -> dict[str, Any]:
    """The sweep file's search section for one (search, seed)."""
    search = {"trials": trials, "seed": seed, "params": PARAMS}
    sweep: dict[str, Any] = {"name": f"{kind.replace('+', '-')}-{seed}"}
    if kind == "random":
        sweep["random"] = search
    else:
        sweep["tpe"] = {**search, "startup_trials": STARTUP_TRIALS}
    if kind.startswith("tpe+"):
        sweep["prune"] = PRUNERS[kind.removeprefix("tpe+")]
    return sweep


def _cached(cache: Path | None, kind: str, seed: int, trials: int) -> Path | None:
    """Where one sweep's trials are kept: a point always gives the same loss and a seeded
    sampler the same points, so a sweep run once need not run again for more seeds."""
    if cache is None:
        return None
    from importlib.metadata import version

    versions = [version(package) for package in ("dltool", "optuna", "keras", "tensorflow")]
    key = json.dumps([_sweep_of(kind, seed, trials), OVERRIDES, BASE.read_text(), versions], sort_keys=True)  # fmt: skip
    return cache / f"{kind}-{seed}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _one_search(job: tuple[str, int, int, Path | None]) -> tuple[str, int, list[dict[str, Any]], bool]:  # fmt: skip
    """One (search, seed) sweep in a fresh folder: what a pool process runs."""
    kind, seed, trials, cache = job
    kept = _cached(cache, kind, seed, trials)
    cached = kept is not None and kept.is_file()
    if kept is not None and cached:
        result = json.loads(kept.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="dltool-bench-sweeps-") as scratch:
            result = run_sweep(Path(scratch), _sweep_of(kind, seed, trials))
        if kept is not None:
            kept.write_text(json.dumps(result))
    print(f"seed {seed} {kind}: best {best_after(result, trials):.4f}", flush=True)
    return kind, seed, result, cached


def quality_and_pruning(seeds: int, trials: int, parts: set[str], parallel: int, cache: Path | None = None) -> list[str]:  # fmt: skip
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    lines: list[str] = []
    runs: dict[str, list[list[dict[str, Any]]]] = {}
    started = time.perf_counter()
    lines.append(f"Machine: {machine()}; {parallel} sweeps at a time, each in its own process.")
    kinds = ["random", "tpe"] + ([f"tpe+{name}" for name in PRUNERS] if "pruning" in parts else [])
    jobs = [(kind, seed, trials, cache) for seed in range(seeds) for kind in kinds]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(parallel, mp_context=context) as pool:
        finished = list(pool.map(_one_search, jobs))
    done = {(kind, seed): result for kind, seed, result, _ in finished}
    reused = sum(cached for *_, cached in finished)
    for kind in kinds:
        runs[kind] = [done[(kind, seed)] for seed in range(seeds)]
    elapsed = time.perf_counter() - started
    lines.append(
        f"Took {elapsed / 60:.1f} min for {sum(len(r) for r in runs.values())} sweeps of {trials} trials"
        + (f" ({reused} of them read from --cache, not run again)." if reused else ".")
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
    # The target's measure: the median over seeds of the best after N trials, TPE's curve
    # against random's value after all the trials.
    goal = statistics.median(best_after(r, trials) for r in runs["random"])
    curve = [statistics.median(best_after(r, n) for r in runs["tpe"]) for n in range(1, trials + 1)]  # fmt: skip
    first = next((n for n, value in enumerate(curve, 1) if value <= goal), trials + 1)
    lines += [
        "",
        f"The median over seeds of TPE's best after N trials reaches random's median {trials}-trial "
        f"best ({goal:.4f}) after **{_count(first, trials)}** trials (target: at most {trials // 2}); "
        f"after {trials // 2} trials it is {curve[trials // 2 - 1]:.4f}.",
        "",
        f"A stricter view, seed by seed (TPE with seed s against random with seed s): the trials TPE "
        f"needed to reach that seed's random {trials}-trial best: {shown}; median {_count(statistics.median(reach), trials)}.",
    ]  # fmt: skip
    pruned_kinds = [kind for kind in runs if kind.startswith("tpe+")]
    if pruned_kinds:
        plain = [best_after(r, trials) for r in runs["tpe"]]
        lines += [
            "",
            "### Pruning on the TPE search: " + "; ".join(f"{name}: {', '.join(f'{k} {v}' for k, v in spec.items())}" for name, spec in PRUNERS.items()),
            "",
            "| search | trials pruned | epochs trained | epochs saved | best validation loss, median (min-max) over seeds |",
            "|---|---|---|---|---|",
            f"| tpe | 0 | {sum(t['epochs'] for r in runs['tpe'] for t in r)} of {sum(len(r) * EPOCHS for r in runs['tpe'])} | - | {statistics.median(plain):.4f} ({min(plain):.4f}-{max(plain):.4f}) |",
        ]  # fmt: skip
        for kind in pruned_kinds:
            full = sum(len(r) * EPOCHS for r in runs[kind])
            trained = sum(t["epochs"] for r in runs[kind] for t in r)
            pruned = sum(t["status"] == "pruned" for r in runs[kind] for t in r)
            bests = [best_after(r, trials) for r in runs[kind]]
            lines.append(f"| {kind} | {pruned} of {sum(len(r) for r in runs[kind])} | {trained} of {full} | **{1 - trained / full:.0%}** | {statistics.median(bests):.4f} ({min(bests):.4f}-{max(bests):.4f}) |")  # fmt: skip
    return lines


def _timed_sweep(folder: Path, name: str, jobs: int, storage: str | None, trials: int, env: dict[str, str]) -> tuple[float, float]:  # fmt: skip
    """A whole `dltool sweep` process for a grid of ``trials`` trials: (its seconds, its
    steady rate in trials per hour, see :func:`steady_rate`)."""
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
    subprocess.run(command, check=True, capture_output=True, env=user_environment() | env, timeout=1800)  # fmt: skip
    seconds = time.perf_counter() - started
    return seconds, steady_rate(_completions(folder / "runs", name, storage), jobs)


def _completions(runs: Path, name: str, storage: str | None) -> list[float]:
    """When each of the study's trials completed (epoch seconds), read back from its storage."""
    import optuna

    from dltool.sweep.folder import JOURNAL
    from dltool.sweep.study import open_storage

    if storage is None:
        (sweep_folder,) = runs.glob(f"{name}-sweep*")
        storage = str(sweep_folder / JOURNAL)
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    done = [t.datetime_complete for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]  # fmt: skip
    return sorted(moment.timestamp() for moment in done if moment is not None)


def steady_rate(completions: list[float], jobs: int) -> float:
    """Trials per hour once every worker runs: the trials completed after the first ``jobs``
    completions, over the time from the last of those to the last completion (start-up
    excluded; every gap between trials and any idle worker at the end included). The first
    ``jobs`` completions are assumed to be one per worker (they start together); were they
    not, the rate would come out lower, never higher.

    >>> steady_rate([10.0, 11.0, 15.0, 16.0, 20.0], 2)
    1200.0
    """
    if len(completions) <= jobs:
        return float("nan")
    return 3600 * (len(completions) - jobs) / (completions[-1] - completions[jobs - 1])


def throughput(trials: int, runs: int, storages: set[str], two_threads: bool = True) -> list[str]:
    import pgserver

    lines = [f"Machine: {machine()}.", ""]
    lines.append(f"### Throughput: a grid of {trials} trials (300 training rows, 10 epochs each); median of {runs} runs, the cases alternating")  # fmt: skip
    lines += [
        "",
        "Two rates for each case. *Whole process*: the trials over the seconds of the whole `dltool sweep` "
        "process, TensorFlow's start-up in every worker (about 8 s here) and the study's creation included, "
        "so a short grid understates what a second worker brings. *Steady*: the rate once every worker runs "
        "(the trials that completed after each worker had finished its first one, over the time from then "
        "to the last; every gap between trials, the study's bookkeeping and a worker idle at the end included), "
        "read back from the study's own completion times: what an hour-long sweep gets.",
        "",
        "| study | workers | threads per worker | seconds, median (min-max) | whole process: trials per hour | vs 1 worker | steady: trials per hour | vs 1 worker |",
        "|---|---|---|---|---|---|---|---|",
    ]
    two = {
        "TF_NUM_INTRAOP_THREADS": "2",
        "OMP_NUM_THREADS": "2",
    }  # each worker as many as the machine
    with tempfile.TemporaryDirectory(prefix="dltool-bench-throughput-") as scratch, pgserver.running_server() as url:  # fmt: skip
        cases = [
            (where, storage, jobs, env)
            for where, storage in (("journal", None), ("PostgreSQL", url))
            if where.lower() in storages
            for jobs, env in ((1, {}), (2, {}), (2, two))
            if two_threads or not env
        ]
        seconds: dict[int, list[float]] = {index: [] for index in range(len(cases))}
        steady: dict[int, list[float]] = {index: [] for index in range(len(cases))}
        for attempt in range(runs):
            for index, (_, storage, jobs, env) in enumerate(cases):
                folder = Path(scratch) / f"{index}-{attempt}"
                folder.mkdir()
                took, rate = _timed_sweep(folder, f"throughput-{index}-{attempt}", jobs, storage, trials, env)  # fmt: skip
                seconds[index].append(took)
                steady[index].append(rate)
                print(f"case {index} run {attempt}: {took:.1f} s, steady {rate:.0f} trials/h", flush=True)  # fmt: skip
        one: dict[str, tuple[float, float]] = {}
        for index, (where, _, jobs, env) in enumerate(cases):
            median = statistics.median(seconds[index])
            rate = 3600 * trials / median
            rate_steady = statistics.median(steady[index])
            if jobs == 1:
                one[where] = (rate, rate_steady)
            threads = env.get("TF_NUM_INTRAOP_THREADS") or (str(max(1, (os.cpu_count() or 1) // jobs)) + " (dltool's default)" if jobs > 1 else "TensorFlow's default")  # fmt: skip
            ratio = f"**{rate / one[where][0]:.2f}x**" if jobs > 1 else "1.00x"
            ratio_steady = f"**{rate_steady / one[where][1]:.2f}x**" if jobs > 1 else "1.00x"
            lines.append(f"| {where} | {jobs} | {threads} | {median:.1f} ({min(seconds[index]):.1f}-{max(seconds[index]):.1f}) | {rate:.0f} | {ratio} | {rate_steady:.0f} ({min(steady[index]):.0f}-{max(steady[index]):.0f}) | {ratio_steady} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--throughput-trials", type=int, default=24)
    parser.add_argument(
        "--storages", default="journal,postgresql", help="throughput: the studies' storages"
    )
    parser.add_argument(
        "--no-two-threads",
        action="store_true",
        help="throughput: leave out the 2-threads-per-worker case",
    )
    parser.add_argument("--runs", type=int, default=2, help="runs of each throughput case")
    parser.add_argument("--only", default="quality,pruning,throughput")
    parser.add_argument(
        "--parallel", type=int, default=2, help="sweeps at a time (quality, pruning)"
    )
    parser.add_argument("--output", type=Path, default=HERE / "results-sweeps.md")
    parser.add_argument(
        "--cache",
        type=Path,
        help="a folder that keeps each (search, seed) sweep's trials: a later run with more "
        "seeds trains only the new ones (keyed by the search, the base file and the package "
        "versions: empty it after changing dltool's code)",
    )
    arguments = parser.parse_args()
    parts = set(arguments.only.split(","))
    lines = [
        "# Benchmarks: sweeps with Optuna (search quality, pruning, throughput)",
        "",
        f"Written by `benchmarks/sweeps.py --seeds {arguments.seeds} --trials {arguments.trials} --only {arguments.only}{' --cache DIR' if arguments.cache else ''}`. "
        "Search: `student_pass_rule.yaml` on 300 training rows and 300 validation rows, 6 epochs, "
        "over six settings: optimizer (sgd, rmsprop, adam), learning rate (log-uniform 1e-5..1), "
        "both hidden layers' widths (1..64), dropout (0..0.9) and L2 (log-uniform 1e-6..0.1); "
        f"metric validation.loss; TPE (multivariate) with {STARTUP_TRIALS} random start-up trials. Each trial's "
        "training seed is the base's, so a point always gives the same loss: the seeds vary the samplers only.",
        "",
    ]  # fmt: skip
    if parts & {"quality", "pruning"}:
        if arguments.cache is not None:
            arguments.cache.mkdir(parents=True, exist_ok=True)
        lines += quality_and_pruning(arguments.seeds, arguments.trials, parts, arguments.parallel, arguments.cache)  # fmt: skip
        lines.append("")
    if "throughput" in parts:
        lines += throughput(
            arguments.throughput_trials,
            arguments.runs,
            set(arguments.storages.lower().split(",")),
            not arguments.no_two_threads,
        )
    arguments.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
