"""Benchmark: dltool against plain Keras doing the same work, and the instant commands.

For each pair, whole processes are timed alternately (A B A B ...) after one
warm-up of each, so machine noise hits both sides alike; medians, min-max and the
ratio dltool/plain are reported. Peak memory is the max RSS from /usr/bin/time -v.

    .venv/bin/python benchmarks/compare.py [--runs 5] [--only student_pass]

Writes benchmarks/results.md. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
PAIRS = {  # example config -> plain-Keras script doing the same work
    "student_pass": "the curriculum notebook: 3-5-4-1 MLP, 1,000 rows, 10 epochs",
    "breast_cancer": "regularized MLP on 569 rows, early stopping",
    "digits_cnn": "CNN on 1,797 8x8 images, early stopping",
}


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one whole process."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=cwd, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return wall, int(match.group(1)) / 1024 if match else float("nan")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def compare(name: str, runs: int, scratch: Path) -> dict[str, object]:
    dltool = [
        str(BIN / "dltool"),
        "train",
        str(REPO / "configs" / f"{name}.yaml"),
        "--runs-dir",
        str(scratch / "runs"),
    ]
    plain = [sys.executable, str(HERE / "plain" / f"{name}.py")]
    timed(dltool, scratch)  # warm-up: file caches, compiled bytecode
    timed(plain, scratch)
    times: dict[str, list[float]] = {"dltool": [], "plain": []}
    memory: dict[str, list[float]] = {"dltool": [], "plain": []}
    for _ in range(runs):
        for label, command in (("dltool", dltool), ("plain", plain)):
            wall, peak = timed(command, scratch)
            times[label].append(wall)
            memory[label].append(peak)
    prefix = yaml_name(name)
    last = sorted(p for p in (scratch / "runs").iterdir() if p.name.startswith(f"{prefix}-"))[-1]
    info = json.loads((last / "run.json").read_text())
    seconds = info.get("timings", {})
    ratio = statistics.median(times["dltool"]) / statistics.median(times["plain"])
    return {
        "name": name,
        "times": times,
        "memory": memory,
        "ratio": ratio,
        "timings": seconds,
        "epochs": info.get("epochs_completed"),
        # training throughput: examples through fit per second (validation passes included)
        "samples_per_s": (info.get("epochs_completed") or 0)
        * (info.get("examples", {}).get("train") or 0)
        / max(seconds.get("fit", 0.0), 1e-9),
    }


def yaml_name(config: str) -> str:
    """The run name an example config sets (``name:``), which prefixes its run folders."""
    text = (REPO / "configs" / f"{config}.yaml").read_text()
    found = re.search(r"^name:\s*(\S+)", text, flags=re.MULTILINE)
    return found.group(1) if found else config


def startup(runs: int, scratch: Path) -> list[tuple[str, list[float]]]:
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dltool --help": [str(BIN / "dltool"), "--help"],
        "dltool validate configs/student_pass.yaml": [
            str(BIN / "dltool"),
            "validate",
            "-q",
            str(REPO / "configs" / "student_pass.yaml"),
        ],
        "dltool runs (empty folder)": [str(BIN / "dltool"), "runs", "--runs-dir", str(scratch)],
        "dltool layers": [str(BIN / "dltool"), "layers"],
    }
    results = []
    for label, command in commands.items():
        timed(command, scratch)
        results.append((label, [timed(command, scratch)[0] for _ in range(runs)]))
    return results


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
    import keras

    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, Keras {keras.__version__}, no GPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=sorted(PAIRS), action="append")
    options = parser.parse_args()
    names = options.only or list(PAIRS)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        starts = startup(options.runs * 2, scratch)
        results = [compare(name, options.runs, scratch) for name in names]
    lines = [
        "# Benchmarks: dltool against plain Keras",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        f"Method: whole processes, {options.runs} runs of each side after one warm-up each, alternating "
        "dltool and plain Keras; median (min-max). Plain scripts: `benchmarks/plain/`.",
        "",
        "## Training: `dltool train` vs the same work in a plain Keras script",
        "",
        "| example | what | dltool | plain Keras | dltool / plain | peak memory dltool / plain |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        memory = result["memory"]
        lines.append(
            f"| {result['name']} | {PAIRS[str(result['name'])]} | {spread(result['times']['dltool'])} | "  # type: ignore[index]
            f"{spread(result['times']['plain'])} | **{result['ratio']:.2f}** | "  # type: ignore[index]
            f"{statistics.median(memory['dltool']):.0f} / {statistics.median(memory['plain']):.0f} MiB |"  # type: ignore[index]
        )
    lines += [
        "",
        "dltool's time includes everything it writes: config.yaml, run.json, history.csv, metrics.json,",
        "predictions.csv, model.keras, summary.txt and two plots. The plain scripts train, evaluate, predict",
        "and save the model only.",
        "",
        "Where dltool's time goes (seconds, last run, from run.json `timings`):",
        "",
        "| example | import | data | build | fit | evaluate | save | total after import | training samples/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        t = result["timings"]
        lines.append(
            f"| {result['name']} | "
            + " | ".join(
                f"{t.get(k, 0):.2f}"
                for k in ("import", "data", "build", "fit", "evaluate", "save", "run_total")
            )
            + f" | {result['samples_per_s']:,.0f} |"  # type: ignore[union-attr]
        )
    lines += [
        "",
        "## Start-up of the instant commands (no TensorFlow import)",
        "",
        "| command | median (min-max) |",
        "|---|---|",
    ]
    lines += [f"| `{label}` | {spread(values)} |" for label, values in starts]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
