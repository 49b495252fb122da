"""Benchmark: start-up of the instant commands against the bare import of the libraries they need.

Issue 17's target 4: `dltool --help`, `validate` and `runs` take at most 1.3x the bare
import of the libraries they need, measured in the same run. Every command and every
baseline is a whole process, run alternately (A B C ... A B C ...) so machine noise hits
them alike, after one warm-up run of each. The children run
without ``PYTHONDONTWRITEBYTECODE`` (timing.user_environment): the warm-up writes dltool's
bytecode cache (.pyc) as the first run of an installed dltool does.

The baselines (``python -c "import ..."``):
- ``typer, rich, yaml``: ``import typer, rich.console, yaml``, the figure the issue quotes;
- ``... + pydantic``: the same plus ``from pydantic import BaseModel, TypeAdapter``.
  ``validate`` checks the config with pydantic models, and Typer 0.29 coerces every
  argument of a command it runs through a pydantic ``TypeAdapter`` (``typer._adapters``),
  so ``validate`` and ``runs`` need pydantic; ``--help`` coerces nothing and does not;
- ``... + Typer's coercion``: the same plus ``import typer._adapters``, the module Typer
  itself imports to run a command: it coerces each parameter through it, the app's own
  options included, so every command but ``--help`` loads it (``layers`` too), with the
  parts of pydantic it uses (``pydantic.types``, ``annotated_types``). Those commands are
  judged against it; their ratio to the narrower baseline is given too;
- ``..., no teardown``: the judging baselines leaving with ``os._exit(0)`` after their
  imports. A dltool command that succeeded leaves that way too (cli.leave_now), skipping
  Python's teardown of the modules, which the plain baselines pay; the ratio to these
  is given beside each verdict, so that what dltool adds on top of the libraries shows
  apart from what it saves at exit.

Used by compare.py (`make bench`); alone it writes benchmarks/results-startup.md:

    .venv/bin/python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from timing import run_timed, spread

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DLTOOL = str(Path(sys.executable).parent / "dltool")
TARGET = 1.3  # a command at most this many times its baseline
BARE = "import typer, rich.console, yaml"
BASELINES = {
    "python -c pass": "pass",
    "bare: typer, rich, yaml": BARE,
    "bare: typer, rich, yaml + pydantic": f"{BARE}; from pydantic import BaseModel, TypeAdapter",
    "bare: typer, rich, yaml + pydantic + Typer's coercion": f"{BARE}; from pydantic import BaseModel, TypeAdapter; import typer._adapters",
}
COERCION = "bare: typer, rich, yaml + pydantic + Typer's coercion"
# A judging baseline -> the same imports leaving as cli.leave_now does, without Python's teardown.
NO_TEARDOWN = {label: f"{label}, no teardown" for label in ("bare: typer, rich, yaml", COERCION)}
BASELINES.update({NO_TEARDOWN[label]: f"{BASELINES[label]}; import os; os._exit(0)" for label in NO_TEARDOWN})  # fmt: skip
NARROWER = {
    COERCION: "bare: typer, rich, yaml + pydantic"
}  # a baseline -> the one without Typer's coercion
# label -> (dltool's arguments, the baseline of the libraries it needs)
COMMANDS = {
    "dltool --help": (["--help"], "bare: typer, rich, yaml"),
    "dltool validate -q configs/student_pass.yaml": (
        ["validate", "-q", str(REPO / "configs" / "student_pass.yaml")],
        COERCION,
    ),
    "dltool runs (empty folder)": (["runs", "--runs-dir", "{scratch}/no-runs"], COERCION),
    "dltool layers": (["layers"], COERCION),
}
TARGETED = ("dltool --help", "dltool validate -q configs/student_pass.yaml", "dltool runs (empty folder)")  # fmt: skip


def _commands(scratch: Path) -> dict[str, list[str]]:
    commands = {label: [sys.executable, "-c", code] for label, code in BASELINES.items()}
    for label, (arguments, _) in COMMANDS.items():
        commands[label] = [DLTOOL, *(a.replace("{scratch}", str(scratch)) for a in arguments)]
    return commands


def startup(runs: int, scratch: Path) -> dict[str, list[float]]:
    """Wall seconds of ``runs`` runs of every command and baseline, alternating."""
    (scratch / "no-runs").mkdir(exist_ok=True)
    commands = _commands(scratch)
    for command in commands.values():
        run_timed(command, scratch)  # warm-up: page cache and .pyc files
    results: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            results[label].append(run_timed(command, scratch).wall)
    return results


def import_report(arguments: list[str], scratch: Path, count: int = 3) -> str:
    """The share of ``dltool ARGUMENTS`` spent importing, and its slowest top-level imports."""
    measured = run_timed([sys.executable, "-X", "importtime", "-m", "dltool", *arguments], scratch)  # fmt: skip
    cumulative: dict[str, int] = {}  # module -> microseconds, itself and what it imported
    for line in measured.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if found:  # no indentation: imported by the program itself, not by another module
            cumulative[found.group(2)] = int(found.group(1))
    share = sum(cumulative.values()) / 1e6 / measured.wall
    top = sorted(cumulative.items(), key=lambda item: -item[1])[:count]
    slowest = ", ".join(f"{module} {micros / 1e6:.2f} s" for module, micros in top)
    return (
        f"importing modules is {share:.0%} of the command's time under `python -X importtime` "
        f"(which slows imports); slowest: {slowest}"
    )


def table(starts: dict[str, list[float]]) -> list[str]:
    """The start-up table: every command beside the baseline of the libraries it needs."""
    lines = [
        "| command | median (min-max) | baseline (the libraries it needs) | baseline median | ratio | ratio to the baseline without teardown |",
        "|---|---|---|---|---|---|",
    ]
    for label in BASELINES:
        lines.append(f"| `{label}` | {spread(starts[label])} | | | | |")
    for label, (_, baseline) in COMMANDS.items():
        median = statistics.median(starts[label])
        ratio = median / statistics.median(starts[baseline])
        strict = median / statistics.median(starts[NO_TEARDOWN[baseline]])
        lines.append(f"| `{label}` | {spread(starts[label])} | {baseline} | {statistics.median(starts[baseline]):.3f} s | **{ratio:.2f}x** | {strict:.2f}x |")  # fmt: skip
    return lines


def targets(starts: dict[str, list[float]], scratch: Path) -> list[tuple[bool, str, str, str]]:
    """Issue 17's target 4, per command: (met, what, margin, why it missed)."""
    found = []
    for label in TARGETED:
        arguments, baseline = COMMANDS[label]
        median = statistics.median(starts[label])
        base = statistics.median(starts[baseline])
        ratio = median / base
        margin = f"{median:.3f} s against {base:.3f} s, {ratio:.2f}x"
        if baseline in NARROWER:
            narrower = statistics.median(starts[NARROWER[baseline]])
            margin += f" ({median / narrower:.2f}x {NARROWER[baseline]}, {narrower:.3f} s)"
        strict = statistics.median(starts[NO_TEARDOWN[baseline]])
        margin += f"; {median / strict:.2f}x the same imports leaving without Python's teardown, as dltool does ({strict:.3f} s)"  # fmt: skip
        why = ""
        if ratio > TARGET:
            real = [a.replace("{scratch}", str(scratch)) for a in arguments]
            over = median - TARGET * base
            why = f"{over * 1000:.0f} ms over {TARGET}x its baseline; {import_report(real, scratch)}"  # fmt: skip
        found.append((ratio <= TARGET, f"`{label}` at most {TARGET}x the bare import of what it needs ({baseline})", margin, why))  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs of each command")
    parser.add_argument("--output", type=Path, default=HERE / "results-startup.md")
    options = parser.parse_args()
    load = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        starts = startup(options.runs, scratch)
        checks = targets(starts, scratch)
    lines = [
        "# Benchmark: start-up of the instant commands",
        "",
        f"Written by `benchmarks/startup.py --runs {options.runs}` on {time.strftime('%Y-%m-%d')}; "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} when it "
        f"started; {options.runs} runs of each, alternating, after a warm-up run of each; "
        f"took {time.perf_counter() - started:.0f} s.",
        "",
        *table(starts),
        "",
        "## Target (issue 17, target 4)",
        "",
        *[
            f"- **{'PASS' if met else 'MISS'}** {what}: {margin}{'. Why: ' + why if why else ''}"
            for met, what, margin, why in checks
        ],
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
    ]
    options.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
