"""Benchmark: the speed options' defaults, measured on this machine.

dltool's defaults are `training.steps_per_execution: 0` (auto: 32 when an epoch has
256 or more batches, else 1), `training.jit_compile: false` and `training.backend:
tensorflow`. Each case below runs whole `dltool train CONFIG --set ... --profile`
processes, the default and each alternative alternately (A B A B A B), and reports
medians of 2 (--runs 3 for more), so the defaults stand on numbers from the machine that runs this.

    .venv/bin/python benchmarks/options.py [--runs 3] [--only notebook] [--output FILE]

Writes benchmarks/results-options.md (about 3 minutes on 2 cores). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from compare import machine
from timing import run_timed, spread

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DLTOOL = str(Path(sys.executable).parent / "dltool")
JAX = importlib.util.find_spec("jax") is not None


@dataclass(frozen=True)
class Case:
    """One config, its default settings and the alternatives timed against them."""

    config: str
    what: str
    base: tuple[str, ...]  # --set applied to every variant
    alternatives: dict[str, tuple[str, ...]]  # label -> --set on top of base


def cases() -> dict[str, Case]:
    jax = {"backend: jax": ("training.backend=jax",)} if JAX else {}
    return {
        "rows_100k": Case(
            "student_pass_rule",
            "student rule MLP on 100,000 rows (80,000 to train: 2,500 batches an epoch), 1 epoch",
            (
                "data.n_train=100000",
                "training.epochs=1",
                "training.early_stopping=null",
                "training.save_best=null",
            ),
            {"steps_per_execution: 1": ("training.steps_per_execution=1",)},
        ),
        "notebook": Case(
            "student_pass",
            "the notebook (student_pass): 1,000 rows, 32 batches an epoch, 10 epochs",
            (),
            {
                "steps_per_execution: 32": ("training.steps_per_execution=32",),
                "jit_compile: true": ("training.jit_compile=true",),
                **jax,
            },
        ),
        "digits_cnn": Case(
            "digits_cnn",
            "digits CNN, early stopping off, 5 epochs",
            ("training.early_stopping=null", "training.epochs=5"),
            {"jit_compile: true": ("training.jit_compile=true",), **jax},
        ),
    }


@dataclass
class Timed:
    walls: list[float]
    fits: list[float]
    steps_per_execution: int | None


def measure(case: Case, runs: int, scratch: Path) -> dict[str, Timed]:
    variants = {"default": (), **case.alternatives}
    results = {label: Timed([], [], None) for label in variants}
    for index in range(runs):
        for position, (label, extra) in enumerate(variants.items()):
            runs_dir = scratch / f"{case.config}-{position}-{index}"
            command = [DLTOOL, "train", str(REPO / "configs" / f"{case.config}.yaml")]
            command += ["--runs-dir", str(runs_dir), "--profile"]
            for assignment in (*case.base, *extra):
                command += ["--set", assignment]
            measured = run_timed(command, scratch)
            (folder,) = runs_dir.iterdir()
            profile = json.loads((folder / "profile.json").read_text())
            results[label].walls.append(measured.wall)
            results[label].fits.append(profile["seconds"]["fit"])
            results[label].steps_per_execution = profile.get("steps_per_execution")
    return results


def table(case: Case, results: dict[str, Timed]) -> list[str]:
    default = statistics.median(results["default"].walls)
    command = " ".join(
        [f"dltool train configs/{case.config}.yaml", *(f"--set {a}" for a in case.base)]
    )
    lines = [
        f"### {case.what}",
        "",
        f"`{command}`, plus the setting below",
        "",
        "| setting | whole process | fit | time / default |",
        "|---|---|---|---|",
    ]
    for label, timed in results.items():
        shown = label
        if label == "default":
            shown = (
                f"default: steps_per_execution 0 (auto, resolved to {timed.steps_per_execution}), "
                "jit_compile false, backend tensorflow"
            )
        wall = statistics.median(timed.walls)
        lines.append(
            f"| {shown} | {spread(timed.walls)} | {statistics.median(timed.fits):.2f} s | "
            f"**{wall / default:.2f}** |"
        )
    fastest = min(results, key=lambda label: statistics.median(results[label].walls))
    ratio = statistics.median(results[fastest].walls) / default
    lines += [
        "",
        "The default is the fastest setting here."
        if fastest == "default"
        else f"Fastest here: {fastest}, {ratio:.2f}x the default's time.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="measured runs of each setting")
    parser.add_argument("--only", choices=sorted(cases()), action="append")
    parser.add_argument("--output", type=Path, default=HERE / "results-options.md")
    options = parser.parse_args()
    started = time.perf_counter()
    chosen = {name: case for name, case in cases().items() if name in (options.only or cases())}
    lines = [
        "# Benchmarks: dltool's speed options",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        f"Method: whole `dltool train` processes, {options.runs} runs of each setting, alternating; "
        "median (min-max); fit seconds from profile.json. Written by `benchmarks/options.py`.",
        "Time / default below 1 means the alternative was faster than dltool's default.",
        "",
        "What each case tests: `steps_per_execution: 0` (auto) against a fixed 1 on a long epoch",
        "and a fixed 32 on a short one; `jit_compile: false` against true on an MLP and a CNN;",
        "`backend: tensorflow` against jax on both, when jax is installed.",
        "",
    ]
    if not JAX:
        lines += ["Backend: jax not installed, so `training.backend: jax` was not measured.", ""]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        run_timed([DLTOOL, "smoke", str(REPO / "configs" / "student_pass.yaml")], scratch)
        for name, case in chosen.items():
            lines += table(case, measure(case, options.runs, scratch))
            print(f"{name} done ({time.perf_counter() - started:.0f} s)")
    options.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"options.py took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
