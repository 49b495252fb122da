"""How long report.html takes to write, and how big it is, for typical runs.

Trains shipped configs as shipped (into a temporary folder), then times the report of each
run: in-process (the part ``dltool train`` adds at the end of a run; median of 5) and as a
whole ``dltool report RUN`` process (Python start-up included; median of 3). Writes
benchmarks/results-report.md. About a minute on 2 cores.

    .venv/bin/python benchmarks/report.py [--only NAME] [--output FILE]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("student_pass_rule", "breast_cancer", "digits_cnn", "shapes_cnn")
TARGET_S = 0.5  # issue 14: a typical run's report in at most half a second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CONFIGS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results-report.md")
    args = parser.parse_args()
    from dltool.api import train
    from dltool.report import write_run_report

    dltool = Path(sys.executable).with_name("dltool")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dltool-bench-report-") as scratch:
        for name in [args.only] if args.only else CONFIGS:
            run = train(REPO / "configs" / f"{name}.yaml", runs_dir=Path(scratch), quiet=True).path
            inside = []
            for _ in range(5):
                started = time.perf_counter()
                page = write_run_report(run)
                inside.append(time.perf_counter() - started)
            whole = []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run([str(dltool), "report", str(run)], check=True, capture_output=True)
                whole.append(time.perf_counter() - started)
            size = page.stat().st_size
            rows.append((name, statistics.median(inside), statistics.median(whole), size))
            print(f"{name}: {rows[-1][1]:.3f} s in-process, {rows[-1][2]:.2f} s as a process, {size / 1000:.0f} kB")  # fmt: skip
    lines = [
        "# report.html: generation time and size",
        "",
        f"`python benchmarks/report.py` on {time.strftime('%Y-%m-%d')}: each shipped config "
        "trained as shipped, then its report written 5 times in-process (what `dltool train` adds "
        "to a run) and 3 times as a whole `dltool report RUN` process (Python start-up included); "
        f"medians. Target: at most {TARGET_S} s for a typical run.",
        "",
        "| run | in-process | `dltool report` process | size |",
        "|---|---|---|---|",
        *(f"| {n} | {a:.3f} s | {b:.2f} s | {s / 1000:.0f} kB |" for n, a, b, s in rows),
        "",
        "Target met: " + ("yes" if all(a <= TARGET_S for _, a, _, _ in rows) else "no") + ".",
    ]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
