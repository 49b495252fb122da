"""Benchmark: dltool against plain Keras doing the same work, and the instant commands.

For each example config, `dltool train` and a hand-written plain-Keras script
(benchmarks/plain/) run as whole processes, alternately (A B A B ...), so machine
noise hits both sides alike; medians, min-max and the ratio dltool/plain are
reported, with peak memory (max RSS of each process), per-phase seconds and
training throughput for both sides. One warm-up before the first pair (`dltool
smoke` over every compared config) loads every file either side reads into the
page cache. A Targets section checks the speed targets (issue 7's, and issue 17's
start-up target, which replaced issue 7's absolute 0.3 s for the instant commands: see
startup.py) and explains each miss from the measured phases. results.md files written
before 2026-12-05 still show the 0.3 s targets, and their dltool processes compiled
dltool's source on every run (timing.user_environment).

    .venv/bin/python benchmarks/compare.py [--runs 5] [--other-runs 2] [--only NAME] [--output FILE]

The examples issue 7 sets a target on (the notebook and the CNNs) get --runs runs of
each side; the other examples --other-runs, which keeps `make bench` under 15 minutes
on 2 cores (--other-runs 5 adds about 4 minutes). Writes benchmarks/results.md
(about 8.5 minutes on 2 cores). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from startup import startup
from startup import table as startup_table
from startup import targets as startup_targets
from timing import Measured, run_timed, spread

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
PHASES = ("import", "data", "build", "fit", "evaluate", "save")
NO_EARLY_STOPPING = "training.early_stopping=null"


@dataclass(frozen=True)
class Pair:
    """An example config and what its plain script (benchmarks/plain/NAME.py) does."""

    what: str
    overrides: tuple[str, ...] = ()  # --set for dltool, so both sides train the same epochs
    cnn: bool = False
    target: bool = False  # issue 7 sets a target on it: always --runs runs, never fewer


# Early stopping ends each side at a different epoch (their batch orders differ), so
# where a config stops early both sides train a fixed number of epochs instead: the
# epoch at which early stopping ended dltool's run, hard-coded in the plain script too.
PAIRS = {
    "student_pass": Pair(
        "the curriculum notebook: 3-5-4-1 MLP, 1,000 rows, 10 epochs", target=True
    ),
    "iris_csv": Pair("MLP on a 150-row CSV, 60 epochs of batch 16"),
    "student_pass_rule": Pair(
        "MLP on 2,000 generated students, 9 epochs, best.keras kept",
        (NO_EARLY_STOPPING, "training.epochs=9"),
    ),
    "student_overfit": Pair("2x256 MLP on 100 rows, 150 epochs of batch 16"),
    "breast_cancer": Pair(
        "regularized MLP on 569 rows, 58 epochs", (NO_EARLY_STOPPING, "training.epochs=58")
    ),
    "digits_cnn": Pair(
        "CNN on 1,797 8x8 images, 29 epochs",
        (NO_EARLY_STOPPING, "training.epochs=29"),
        cnn=True,
        target=True,
    ),
    "shapes_cnn": Pair(
        "CNN on 2,400 generated 32x32 images, 20 epochs",
        (NO_EARLY_STOPPING,),
        cnn=True,
        target=True,
    ),
}
NOT_COMPARED = {  # configs/ files without a plain script, and why
    "mnist_cnn": "needs the 11 MB MNIST download (keras.datasets.mnist); `make bench` runs offline, and benchmarks/cnn_speed.py compares it on synthetic MNIST-shaped data ([results-cnn.md](results-cnn.md))",
    "smoke": "a 2-epoch installation check, not an example",
    "deep_net": "a curriculum config that records the model's internals (benchmarks/internals.py measures that cost)",
}
CNN_NOT_COMPARED = ("mnist_cnn",)
NOTEBOOK_LIMIT = 1.05  # dltool / plain on student_pass
CNN_LIMIT = 1.0  # dltool / plain on each CNN example: dltool must be faster


@dataclass
class Side:
    """The measured runs of one side of a pair."""

    walls: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    train_examples: int = 0

    def add(self, measured: Measured, phases: dict[str, float], epochs: int, train: int) -> None:
        self.walls.append(measured.wall)
        self.peaks.append(measured.peak_mib)
        self.phases.append(phases)
        self.epochs.append(epochs)
        self.train_examples = train

    def phase(self, name: str) -> float:
        """Median seconds of a phase; ``other`` is the wall time no phase accounts for."""
        if name == "other":
            values = [
                wall - sum(p.get(k, 0.0) for k in PHASES)
                for wall, p in zip(self.walls, self.phases, strict=True)
            ]
        elif name == "wall":
            values = self.walls
        else:
            values = [p.get(name, 0.0) for p in self.phases]
        return statistics.median(values)

    def samples_per_s(self) -> float:
        """Training examples through fit per second (validation passes inside fit included)."""
        return statistics.median(
            e * self.train_examples / max(p.get("fit", 0.0), 1e-9)
            for e, p in zip(self.epochs, self.phases, strict=True)
        )


@dataclass
class Comparison:
    name: str
    dltool: Side
    plain: Side
    splits: dict[str, int]  # dltool's split sizes, from run.json

    @property
    def ratio(self) -> float:
        return self.dltool.phase("wall") / self.plain.phase("wall")


def commands(name: str, runs_dir: Path) -> tuple[list[str], list[str]]:
    """(dltool command, plain command) of one pair."""
    dltool = [str(BIN / "dltool"), "train", str(REPO / "configs" / f"{name}.yaml")]
    dltool += ["--runs-dir", str(runs_dir)]
    for assignment in PAIRS[name].overrides:
        dltool += ["--set", assignment]
    return dltool, [sys.executable, str(HERE / "plain" / f"{name}.py")]


def warm_up(names: list[str], scratch: Path) -> None:
    """Read every file either side needs once, so the first measured run is not the cold one.

    One `dltool smoke` process over every compared config imports what the plain scripts
    import too (Keras, TensorFlow, scikit-learn, pandas) and reads every data file.
    """
    configs = [str(REPO / "configs" / f"{name}.yaml") for name in names]
    run_timed([str(BIN / "dltool"), "smoke", *configs], scratch)


def compare(name: str, runs: int, scratch: Path) -> Comparison:
    dltool, plain = Side(), Side()
    splits: dict[str, int] = {}
    for index in range(runs):
        runs_dir = scratch / "runs" / f"{name}-{index}"
        dltool_command, plain_command = commands(name, runs_dir)
        measured = run_timed(dltool_command, scratch)
        (folder,) = runs_dir.iterdir()
        info = json.loads((folder / "run.json").read_text())
        splits = info["examples"]
        dltool.add(measured, info["timings"], info["epochs_completed"], splits["train"])
        measured = run_timed(plain_command, scratch)
        report = json.loads(measured.stdout.strip().splitlines()[-1])
        plain.add(measured, report["seconds"], report["epochs"], report["train_examples"])
    return Comparison(name, dltool, plain, splits)


# ---------------------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        memory = f", {int(found.group(1)) / 1024**2:.0f} GiB RAM" if found else ""
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, Keras {version('keras')}, "
        f"TensorFlow {version('tensorflow')}, no GPU"
    )


def training_table(results: list[Comparison]) -> list[str]:
    lines = [
        "| example | what | train / validation / test | epochs dltool / plain | dltool | plain Keras | dltool / plain | peak memory dltool / plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in results:
        sizes = " / ".join(str(c.splits.get(k, 0)) for k in ("train", "validation", "test"))
        epochs = (
            f"{statistics.median(c.dltool.epochs):.0f} / {statistics.median(c.plain.epochs):.0f}"
        )
        memory = (
            f"{statistics.median(c.dltool.peaks):.0f} / {statistics.median(c.plain.peaks):.0f} MiB"
        )
        lines.append(
            f"| {c.name} | {PAIRS[c.name].what} | {sizes} | {epochs} | {spread(c.dltool.walls)} | "
            f"{spread(c.plain.walls)} | **{c.ratio:.2f}** | {memory} |"
        )
    return lines


def not_same_work(results: list[Comparison]) -> list[str]:
    """A warning for each pair whose two sides did not train the same epochs on the same rows."""
    lines = []
    for c in results:
        epochs = sorted(set(c.dltool.epochs) | set(c.plain.epochs))
        rows = (c.dltool.train_examples, c.plain.train_examples)
        if len(epochs) > 1 or rows[0] != rows[1]:
            lines.append(
                f"**Not the same work: {c.name}**: epochs {c.dltool.epochs} (dltool) vs "
                f"{c.plain.epochs} (plain), training rows {rows[0]} vs {rows[1]}; fix the "
                "plain script or PAIRS in compare.py."
            )
    return [*lines, ""] if lines else []


def throughput_table(results: list[Comparison]) -> list[str]:
    lines = [
        "| example | fit seconds dltool / plain | seconds per epoch dltool / plain | training samples/s dltool / plain | dltool / plain |",
        "|---|---|---|---|---|",
    ]
    for c in results:
        fit = (c.dltool.phase("fit"), c.plain.phase("fit"))
        epochs = (statistics.median(c.dltool.epochs), statistics.median(c.plain.epochs))
        rate = (c.dltool.samples_per_s(), c.plain.samples_per_s())
        name = f"**{c.name}** (CNN)" if PAIRS[c.name].cnn else c.name
        lines.append(
            f"| {name} | {fit[0]:.2f} / {fit[1]:.2f} | {fit[0] / epochs[0]:.3f} / "
            f"{fit[1] / epochs[1]:.3f} | {rate[0]:,.0f} / {rate[1]:,.0f} | {rate[0] / rate[1]:.2f} |"
        )
    return lines


def phase_table(results: list[Comparison]) -> list[str]:
    columns = (*PHASES, "other", "wall")
    lines = [
        "| example | side | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for c in results:
        for label, side in (("dltool", c.dltool), ("plain", c.plain)):
            cells = " | ".join(f"{side.phase(k):.2f}" for k in columns)
            lines.append(f"| {c.name} | {label} | {cells} |")
    return lines


def gap_reason(c: Comparison) -> str:
    """Why dltool's run takes longer: the phases where its median seconds exceed plain's."""
    gap = c.dltool.phase("wall") - c.plain.phase("wall")
    differences = {k: c.dltool.phase(k) - c.plain.phase(k) for k in (*PHASES, "other")}
    more = sorted(((d, k) for k, d in differences.items() if d >= 0.01), reverse=True)
    less = sorted((d, k) for k, d in differences.items() if d <= -0.01)
    text = f"dltool takes {gap:+.2f} s per run (median wall)"
    if more:
        text += "; it spends more in " + ", ".join(
            f"{k} {d:+.2f} s ({c.dltool.phase(k):.2f} vs {c.plain.phase(k):.2f})"
            for d, k in more[:3]
        )
    if less:
        text += "; less in " + ", ".join(f"{k} {d:+.2f} s" for d, k in less[:2])
    return text


def verdict(passed: bool, what: str, margin: str, reason: str = "") -> str:
    if passed:
        return f"- **PASS** {what}: {margin}"
    return f"- **MISS** {what}: {margin}. Why: {reason}"


def predict_target() -> list[str]:
    """The predict target, as benchmarks/predict_csv.py judged it in results-predict.md."""
    what = "`dltool predict` on 1,000,000 CSV rows at most 0.5x the plain script and at most 1.2x `model.predict`"
    path = HERE / "results-predict.md"
    if not path.exists():
        return [
            f"- **not measured here** {what}: run `benchmarks/predict_csv.py` (part of "
            "`make bench`); it writes benchmarks/results-predict.md"
        ]
    section = re.search(
        r"^## Target[^\n]*\n(.*?)(?=^## |\Z)", path.read_text(), flags=re.MULTILINE | re.DOTALL
    )
    source = "[results-predict.md](results-predict.md), by `benchmarks/predict_csv.py`"
    if section is None:
        return [f"- {what}: see {source} (it has no Target section to quote)"]
    body = section.group(1).strip().splitlines()
    checks = [line[2:] for line in body if line.startswith("- ")]
    missed = sum("miss" in check.lower() for check in checks)
    label = "MISS" if missed else "PASS"
    lines = [
        f"- **{label}** {what} ({len(checks) - missed} of {len(checks)} measures; from {source}):"
    ]
    lines += [f"  - {check}" for check in checks]
    why = " ".join(line for line in body if line and not line.startswith("- "))
    if why and missed:
        lines.append(f"  - Why: {why}")
    return lines


def targets(results: list[Comparison], starts: dict[str, list[float]], scratch: Path) -> list[str]:
    lines = [verdict(*check) for check in startup_targets(starts, scratch)]
    measured = {c.name: c for c in results}
    for name in [n for n, p in PAIRS.items() if p.cnn] + list(CNN_NOT_COMPARED):
        what = f"`dltool train` faster than plain Keras on the CNN example {name}"
        if name not in measured:
            why = NOT_COMPARED.get(name, "not in this run (--only)")
            lines.append(f"- **not measured** {what}: {why}")
            continue
        c = measured[name]
        margin = f"ratio {c.ratio:.2f}, {abs(CNN_LIMIT - c.ratio):.2f} {'under' if c.ratio < CNN_LIMIT else 'over'} {CNN_LIMIT:.2f}"
        lines.append(verdict(c.ratio < CNN_LIMIT, what, margin, gap_reason(c)))
    what = "`dltool train` within 5% of plain Keras on the notebook example student_pass"
    if "student_pass" in measured:
        c = measured["student_pass"]
        margin = f"ratio {c.ratio:.2f}, {abs(NOTEBOOK_LIMIT - c.ratio):.2f} {'under' if c.ratio <= NOTEBOOK_LIMIT else 'over'} {NOTEBOOK_LIMIT:.2f}"
        lines.append(verdict(c.ratio <= NOTEBOOK_LIMIT, what, margin, gap_reason(c)))
    else:
        lines.append(f"- **not measured** {what}: not in this run (--only)")
    return lines + predict_target()


def report(
    results: list[Comparison], starts: dict[str, list[float]], runs: tuple[int, int], scratch: Path
) -> list[str]:
    return [
        "# Benchmarks: dltool against plain Keras",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        f"Method: whole processes, {runs[0]} runs of each side for the examples with a target "
        f"(student_pass and the CNNs), {runs[1]} for the others, alternating dltool and plain Keras, "
        "after one warm-up (`dltool smoke` over every compared config); median (min-max). "
        "Peak memory: max RSS of each process (`os.wait4`). Written by `benchmarks/compare.py`; "
        "plain scripts in `benchmarks/plain/`.",
        "",
        "## Training: `dltool train` vs the same work in a plain Keras script",
        "",
        *training_table(results),
        "",
        *not_same_work(results),
        "Same work on both sides: the same data (identical arrays and split sizes: dltool holds out",
        "`round(fraction x rows)`, stratified and seeded, and so do the scripts), model, epochs,",
        "batch size and seed. Where a config stops early, early stopping is off on both sides",
        "(`--set training.early_stopping=null`) and both train the epochs shown, so the epoch counts",
        "match. dltool's time includes everything it writes: config.yaml, run.json, history.csv,",
        "metrics.json, predictions.csv, model.keras, summary.txt, two plots and its checkpoints; it",
        "also evaluates every split. The plain scripts evaluate and predict the test split and save",
        "the model (and best.keras where the config keeps it).",
        "",
        "## Training throughput",
        "",
        *throughput_table(results),
        "",
        "Samples/s = epochs x training rows / seconds in `fit` (validation passes inside fit count as",
        "fit time on both sides). dltool's fit time is run.json `timings.fit`; the plain scripts time",
        "their own `model.fit` and print it as JSON.",
        "",
        "## Where the time goes (median seconds per phase)",
        "",
        *phase_table(results),
        "",
        "import: importing Keras and TensorFlow. data: load and split. build: build, adapt, compile.",
        "evaluate: evaluate and predict (dltool: every split, plus a per-class report). save: dltool",
        "writes predictions.csv, metrics.json, plots and model.keras; plain writes model.keras.",
        "other: wall time outside these phases: Python start-up and exit, and for dltool its CLI,",
        "config validation, run folder, config.yaml, run.json, summary.txt and checkpoints.",
        "",
        "## Start-up of the instant commands (no TensorFlow import)",
        "",
        *startup_table(starts),
        "",
        "## Targets (issues 7 and 17)",
        "",
        *targets(results, starts, scratch),
        "",
        "## Not compared",
        "",
        *[f"- `configs/{name}.yaml`: {why}." for name, why in NOT_COMPARED.items()],
        "",
        "The defaults `steps_per_execution: 0` (auto), `jit_compile: false` and `backend: tensorflow`",
        "are measured by `benchmarks/options.py`: [results-options.md](results-options.md).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each side")
    parser.add_argument(
        "--other-runs", type=int, default=2, help="runs for the examples without a target"
    )
    parser.add_argument("--only", choices=sorted(PAIRS), action="append")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    options = parser.parse_args()
    names = options.only or list(PAIRS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        starts = startup(options.runs, scratch)
        warm_up(names, scratch)
        results = []
        for name in names:
            runs = options.runs if PAIRS[name].target else min(options.runs, options.other_runs)
            results.append(compare(name, runs, scratch))
            print(f"{name}: ratio {results[-1].ratio:.2f} ({time.perf_counter() - started:.0f} s)")
        runs = (options.runs, min(options.runs, options.other_runs))
        lines = report(results, starts, runs, scratch)
    options.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"compare.py took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
