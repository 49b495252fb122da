"""What ``training.record_internals`` costs: fit seconds per epoch with it off and on.

Each shipped config below is trained as a whole ``dltool train`` process, alternating off and
on, ``--runs`` times each; the fit phase comes from run.json's ``timings.fit`` divided by the
epochs completed (early stopping ends both sides at the same epoch: recording changes no
random draw). Writes benchmarks/results-internals.md. About 4 minutes on 2 cores.

    .venv/bin/python benchmarks/internals.py [--runs N] [--only NAME] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("student_pass_rule", "digits_cnn", "shapes_cnn")
TARGET = 0.03  # issue 14: at most 3% of fit time


def fit_per_epoch(config: str, record: bool, scratch: Path) -> tuple[float, float]:
    """(fit seconds per epoch, the share of fit time recording took: 0 when off)."""
    runs = scratch / f"{config}-{record}-{time.monotonic_ns()}"
    dltool = Path(sys.executable).with_name("dltool")
    command = [str(dltool), "train", str(REPO / "configs" / f"{config}.yaml"), "--runs-dir", str(runs)]  # fmt: skip
    command += ["--set", f"training.record_internals={'true' if record else 'false'}"]
    subprocess.run(command, check=True, capture_output=True)
    (folder,) = runs.iterdir()
    info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    fit = float(info["timings"]["fit"])
    share = 0.0
    if record:  # what the callback timed itself: free of the noise between two processes
        share = json.loads((folder / "internals.json").read_text(encoding="utf-8"))["seconds"] / fit
    return fit / int(info["epochs_completed"]), share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=CONFIGS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results-internals.md")  # fmt: skip
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dltool-bench-internals-") as scratch:
        for config in [args.only] if args.only else CONFIGS:
            off, on, shares = [], [], []
            for _ in range(args.runs):
                off.append(fit_per_epoch(config, False, Path(scratch))[0])
                seconds, share = fit_per_epoch(config, True, Path(scratch))
                on.append(seconds)
                shares.append(share)
            plain, recorded, own = statistics.median(off), statistics.median(on), statistics.median(shares)  # fmt: skip
            rows.append((config, plain, recorded, own, min(off), max(off), min(on), max(on)))
            print(f"{config}: off {plain:.4f} s/epoch, on {recorded:.4f} s/epoch; recording {own:.1%} of fit")  # fmt: skip
    lines = [
        "# training.record_internals: what recording costs",
        "",
        f"`python benchmarks/internals.py --runs {args.runs}` on {time.strftime('%Y-%m-%d')}: each "
        "shipped config trained as a whole process with `training.record_internals` off and on, "
        f"alternating, {args.runs} times each; fit seconds per epoch from run.json (medians, "
        "min-max in brackets), and the seconds the recording callback timed itself "
        "(internals.json) as a share of the same runs' fit time (median): the cost without the "
        "noise between processes on a shared machine. "
        f"Target: at most {TARGET:.0%} of fit time.",
        "",
        "| config | off (s/epoch) | on (s/epoch) | recording's own share of fit |",
        "|---|---|---|---|",
        *(
            f"| {c} | {a:.4f} ({a0:.4f}-{a1:.4f}) | {b:.4f} ({b0:.4f}-{b1:.4f}) | {d:.1%} |"
            for c, a, b, d, a0, a1, b0, b1 in rows
        ),
        "",
        "Target met: "
        + ", ".join(f"{c} {'yes' if d <= TARGET else 'no'}" for c, _, _, d, *_ in rows)
        + ".",
    ]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
