"""Benchmark: `dltool predict` on 1,000,000 CSV rows against the plain script and `model.predict`.

The issue's targets (issue 17, target 2), for the whole `dltool predict` command on a
1,000,000-row CSV:

- at most 0.5x the plain script a user would write (`pandas.read_csv`, `model.predict`,
  `DataFrame.to_csv`), measured with Keras' default batch size (what a user writes) and,
  stricter, with dltool's batch size 1024;
- at most 1.2x `model.predict` alone (load the model, `np.load` the rows, predict with
  batch size 1024, nothing written), measured as whole processes and, strictly, dltool's
  time after start-up against `model.predict` in memory.

Measured, every figure the median of ``--repeats`` runs (at least 3):

- whole processes, in turn (A B C ... A B C ...) so machine noise hits all alike, with
  peak memory (max RSS, from /usr/bin/time -v): `dltool predict` on the CSV, on the same
  rows as an .npy and on a 1-row CSV (its start-up); the plain script (default batch size,
  and 1024) on the CSV and on the 1-row CSV; `model.predict` alone on the .npy and on a
  1-row .npy;
- in this process, alternately: `model.predict` on the rows held in memory, and dltool's
  own `predict_file` on the .npy and on the CSV, which report their seconds loading,
  reading, predicting and writing the output CSV.

The earlier target, `dltool predict` within 10% of `model.predict` on the same arrays,
is still checked (its own section). Not part of `make test`.

    .venv/bin/python benchmarks/predict_csv.py [--rows 1000000] [--repeats 3]

Writes benchmarks/results-predict.md.
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
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from timing import cpu_model

from dltool.inputs import ARRAY_CHUNK_BYTES, CSV_CHUNK_ROWS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DLTOOL = Path(sys.executable).with_name("dltool")
TARGET = 0.10  # the earlier target: dltool may be at most 10% slower than model.predict
PLAIN_LIMIT = 0.5  # issue 17: dltool predict's whole time / the plain script's, at most
ALONE_LIMIT = 1.2  # issue 17: dltool predict's whole time / model.predict alone's, at most
BATCH_SIZE = 1024  # dltool predict's default --batch-size
CHUNK_ROWS = ARRAY_CHUNK_BYTES // (4 * 3)  # .npy rows per chunk: float32 x 3 features

# What a user writes: read the CSV, predict, write the probabilities. Keras' default batch
# size unless a batch size is given; verbose=0 here and everywhere (no progress bar).
PLAIN_SCRIPT = """\
import sys

import keras
import pandas as pd

model_file, source, out, batch, *features = sys.argv[1:]
model = keras.saving.load_model(model_file)
frame = pd.read_csv(source)
sizes = {} if batch == "default" else {"batch_size": int(batch)}
probabilities = model.predict(frame[features].to_numpy("float32"), verbose=0, **sizes)
pd.DataFrame({"prob_pass": probabilities[:, 0]}).to_csv(out, index=False)
"""

# model.predict alone: the rows already as an array, nothing written.
ALONE_SCRIPT = """\
import sys

import keras
import numpy as np

model = keras.saving.load_model(sys.argv[1])
model.predict(np.load(sys.argv[2]), batch_size=int(sys.argv[3]), verbose=0)
"""


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident memory in MiB) of one whole process."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return wall, int(peak.group(1)) / 1024 if peak else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> float:
    """max / min of repeated timings: 1.0 is a quiet machine."""
    return max(values) / min(values) if min(values) > 0 else float("inf")


def verdict(ratio: float) -> str:
    """The earlier target: 'pass' or 'miss' for dltool's rows/s over model.predict's."""
    slower = 1 - ratio  # fraction of model.predict's throughput lost
    points = abs(TARGET - slower) * 100
    how = f"{abs(slower) * 100:.0f}% {'slower' if slower >= 0 else 'faster'} than `model.predict`"
    if slower <= TARGET:
        return f"**pass**, {how}: {points:.0f} points inside the 10% limit"
    return f"**miss**, {how}: {points:.0f} points over the 10% limit"


def judged(ours: float, theirs: float, limit: float) -> str:
    """'pass' or 'miss' for ``ours / theirs`` against ``limit``, with the margin in seconds."""
    ratio = ours / theirs
    word = "pass" if ratio <= limit else "miss"
    gap = abs(ours - limit * theirs)
    side = "under" if ratio <= limit else "over"
    return (
        f"**{word}**, {ours:.2f} s against {theirs:.2f} s: {ratio:.2f}x, {abs(limit - ratio):.2f} "
        f"{side} the {limit}x limit ({gap:.2f} s {'to spare' if ratio <= limit else 'too slow'})"
    )


def write_inputs(work: Path, rows: int) -> tuple[np.ndarray, Path, Path, Path, Path]:
    """(the rows as float32, the 1M-row CSV, the same rows as .npy, a 1-row CSV, a 1-row .npy)."""
    rng = np.random.default_rng(0)
    table = np.column_stack(
        [rng.integers(17, 31, rows), rng.uniform(0, 40, rows), rng.uniform(0, 100, rows)]
    )
    source = work / "students.csv"
    with open(source, "w") as handle:
        handle.write("age,hours_studied,previous_score\n")
        np.savetxt(handle, table, delimiter=",", fmt=["%d", "%.3f", "%.3f"])
    x = table.astype("float32")
    np.save(work / "students.npy", x)
    small = work / "small.csv"
    small.write_text("age,hours_studied,previous_score\n21,12.5,71\n")
    np.save(work / "small.npy", np.array([[21, 12.5, 71]], dtype="float32"))
    return x, source, work / "students.npy", small, work / "small.npy"


class InlineWriter:
    """predict_file's writer without its thread: each chunk formatted and written in turn (what
    the thread is measured against)."""

    def __init__(self, work: Any) -> None:
        self.work, self.busy = work, 0.0

    def __enter__(self) -> InlineWriter:
        return self

    def put(self, item: Any) -> None:
        started = time.perf_counter()
        self.work(item)
        self.busy += time.perf_counter() - started

    def __exit__(self, *failure: object) -> None:
        return None


def in_process(run: Path, x: np.ndarray, npy: Path, source: Path, work: Path, repeats: int) -> dict[str, list[float]]:  # fmt: skip
    """Alternately: model.predict; dltool's predict_file on the .npy, on the CSV, and on the
    CSV without its writer thread; dltool's model calls one batch per call (as before they ran
    ``PREDICT_STEPS_PER_CALL`` per call). Seconds per run, and predict_file's phases
    (``npy:load``, ``csv:write``, ...)."""
    from dltool.backend import import_keras

    keras = import_keras()
    import dltool.pipelines
    import dltool.predict
    from dltool.pipelines import predict_array
    from dltool.predict import open_run, predict_file

    trained = open_run(run)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    model.predict(x[:BATCH_SIZE], batch_size=BATCH_SIZE, verbose=0)  # warm-up: trace once
    predict_file(trained, npy, work / "warm.csv", BATCH_SIZE, overwrite=True)
    per_call = dltool.pipelines.PREDICT_STEPS_PER_CALL
    single = keras.saving.load_model(run / "model.keras", safe_mode=True)
    predict_array(single, x[: 2 * BATCH_SIZE], BATCH_SIZE)  # warm-up (2 batches: one per call)
    threaded = dltool.predict.Behind
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(x, batch_size=BATCH_SIZE, verbose=0)
        times.setdefault("model.predict", []).append(time.perf_counter() - started)
        for name, path in (("npy", npy), ("csv", source), ("csv_inline", source)):
            dltool.predict.Behind = InlineWriter if name == "csv_inline" else threaded
            started = time.perf_counter()
            result = predict_file(trained, path, work / "in.csv", BATCH_SIZE, overwrite=True)
            times.setdefault(name, []).append(time.perf_counter() - started)
            for phase, seconds in result.seconds.items():
                times.setdefault(f"{name}:{phase}", []).append(seconds)
        dltool.predict.Behind = threaded
        started = time.perf_counter()
        dltool.pipelines.PREDICT_STEPS_PER_CALL = 1  # as before: one batch per model call
        try:
            predict_array(single, x, BATCH_SIZE)
        finally:
            dltool.pipelines.PREDICT_STEPS_PER_CALL = per_call
        times.setdefault("one_per_call", []).append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measure (at least 3)")
    arguments = parser.parse_args()
    rows, repeats = arguments.rows, max(3, arguments.repeats)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        subprocess.run(
            [str(DLTOOL), "train", str(REPO / "configs" / "student_pass_rule.yaml"), "--runs-dir", str(work / "runs")],
            check=True, capture_output=True,
        )  # fmt: skip
        (run,) = (work / "runs").iterdir()
        features = json.loads((run / "run.json").read_text())["feature_names"]
        x, source, npy, small, small_npy = write_inputs(work, rows)
        size_mb = source.stat().st_size / 1e6
        (work / "plain.py").write_text(PLAIN_SCRIPT)
        (work / "alone.py").write_text(ALONE_SCRIPT)
        out = str(work / "out.csv")
        model_file = str(run / "model.keras")

        def dltool(path: Path) -> list[str]:
            return [str(DLTOOL), "predict", str(run), "--input", str(path), "--output", out, "--overwrite"]  # fmt: skip

        def plain(path: Path, batch: str) -> list[str]:
            return [sys.executable, str(work / "plain.py"), model_file, str(path), out, batch, *features]  # fmt: skip

        def alone(path: Path) -> list[str]:
            return [sys.executable, str(work / "alone.py"), model_file, str(path), str(BATCH_SIZE)]

        commands = {  # name: (command, rows it writes to out.csv, or None)
            "startup": (dltool(small), 1),
            "csv": (dltool(source), rows),
            "npy": (dltool(npy), rows),
            "plain": (plain(source, "default"), rows),
            "plain_1024": (plain(source, str(BATCH_SIZE)), rows),
            "plain_startup": (plain(small, str(BATCH_SIZE)), 1),
            "alone": (alone(npy), None),
            "alone_startup": (alone(small_npy), None),
        }
        process: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(repeats):  # in turn, so noise hits every measure alike
            for name, (command, expected) in commands.items():
                Path(out).unlink(missing_ok=True)
                process[name].append(timed(command))
                if expected is not None:
                    with open(out) as handle:
                        written = sum(1 for _ in handle) - 1
                    if written != expected:
                        sys.exit(f"{name}: wrote {written} rows, expected {expected}")
        times = in_process(run, x, npy, source, work, repeats)

    load_after = os.getloadavg()[0]
    wall = {name: median([w for w, _ in runs]) for name, runs in process.items()}
    peak = {name: median([p for _, p in runs]) for name, runs in process.items()}
    middle = {name: median(values) for name, values in times.items()}
    after = {  # seconds after start-up: the same command on 1 row subtracted
        "csv": wall["csv"] - wall["startup"],
        "npy": wall["npy"] - wall["startup"],
        "plain_1024": wall["plain_1024"] - wall["plain_startup"],
        "alone": wall["alone"] - wall["alone_startup"],
    }
    plain_rate = rows / middle["model.predict"]
    pair_ratios = [p / d for p, d in zip(times["model.predict"], times["npy:predict"], strict=True)]
    noisiest = max(
        [spread([w for w, _ in runs]) for runs in process.values()]
        + [spread(times[name]) for name in ("model.predict", "npy", "csv")]
    )  # fmt: skip
    cores = os.cpu_count() or 1
    from dltool.pipelines import PREDICT_STEPS_PER_CALL as per_call  # TensorFlow: loaded by now

    def rate(seconds: float) -> str:
        return f"{rows / max(seconds, 1e-9):,.0f}"

    def phases(kind: str) -> str:
        total = middle[kind]

        def share(phase: str) -> str:
            return f"{middle[f'{kind}:{phase}']:.2f} s ({middle[f'{kind}:{phase}'] / total:.0%})"

        return (
            f"loading the model {share('load')}, reading {share('read')}, predicting "
            f"{share('predict')}, waiting for the writer and closing the file {share('write')}; "
            f"meanwhile the writer thread formatted and wrote for "
            f"{middle[f'{kind}:write_behind']:.2f} s"
        )

    lines = [
        "# Benchmark: `dltool predict` against the plain script and `model.predict`",
        "",
        f"Machine: {cpu_model()}, {cores} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"Keras {version('keras')}, NumPy {version('numpy')}, pandas {version('pandas')}; "
        f"{time.strftime('%Y-%m-%d')}. Every figure is the median of {repeats} runs; batch size "
        f"{BATCH_SIZE} unless said otherwise; no progress bars (`verbose=0`).",
        "",
        f"Input: {rows:,} rows x 3 columns ({size_mb:.1f} MB CSV, and the same rows as an .npy), "
        "student model (216 parameters). `dltool predict` writes row, prob_fail, prob_pass and "
        "predicted (fixed-point, 6 decimals); the plain script writes prob_pass (pandas' float "
        "text).",
        "",
        "## Whole processes",
        "",
        "| process | seconds | after start-up | peak memory |",
        "|---|---|---|---|",
        f"| `dltool predict` on the CSV | {wall['csv']:.2f} | {after['csv']:.2f} | {peak['csv']:.0f} MiB |",
        f"| `dltool predict` on the .npy | {wall['npy']:.2f} | {after['npy']:.2f} | {peak['npy']:.0f} MiB |",
        f"| `dltool predict` on a 1-row CSV (its start-up) | {wall['startup']:.2f} | | {peak['startup']:.0f} MiB |",
        f"| plain script, Keras' default batch size (32) | {wall['plain']:.2f} | {wall['plain'] - wall['plain_startup']:.2f} | {peak['plain']:.0f} MiB |",
        f"| plain script, batch size {BATCH_SIZE} | {wall['plain_1024']:.2f} | {after['plain_1024']:.2f} | {peak['plain_1024']:.0f} MiB |",
        f"| plain script on a 1-row CSV (its start-up) | {wall['plain_startup']:.2f} | | {peak['plain_startup']:.0f} MiB |",
        f"| `model.predict` alone on the .npy | {wall['alone']:.2f} | {after['alone']:.2f} | {peak['alone']:.0f} MiB |",
        f"| `model.predict` alone on a 1-row .npy (its start-up) | {wall['alone_startup']:.2f} | | {peak['alone_startup']:.0f} MiB |",
        "",
        "The plain script: `keras.saving.load_model`, `pd.read_csv`, `model.predict(frame[features]"
        '.to_numpy("float32"))`, `pd.DataFrame({"prob_pass": ...}).to_csv(out, index=False)`. '
        "`model.predict` alone: `load_model`, `np.load`, `model.predict(x, batch_size=1024)`. "
        '"After start-up" subtracts the same command on 1 row.',
        "",
        "## In this process",
        "",
        "| measure | seconds | rows/s |",
        "|---|---|---|",
        f"| `model.predict` on the rows in memory | {middle['model.predict']:.2f} | {plain_rate:,.0f} |",
        f"| dltool's prediction step on the same rows (`predict_file`'s model calls, {CHUNK_ROWS:,}-row chunks) | {middle['npy:predict']:.2f} | {rate(middle['npy:predict'])} |",
        f"| dltool's `predict_file` on the .npy, all of it | {middle['npy']:.2f} | {rate(middle['npy'])} |",
        f"| dltool's `predict_file` on the CSV, all of it | {middle['csv']:.2f} | {rate(middle['csv'])} |",
        f"| the same without its writer thread (each chunk formatted and written in turn) | {middle['csv_inline']:.2f} | {rate(middle['csv_inline'])} |",
        f"| dltool's model calls one batch per call as before (now {per_call} per call), the rows in memory | {middle['one_per_call']:.2f} | {rate(middle['one_per_call'])} |",
        "",
        f"Where `predict_file`'s time goes, CSV input ({CSV_CHUNK_ROWS:,}-row chunks): "
        f"{phases('csv')}. The .npy input: {phases('npy')}. The writer runs in a thread beside "
        "the model calls, so only the time the main thread waited for it adds up.",
        "",
    ]
    lines += targets(wall, after, middle, rows)
    lines += [
        "## Earlier target: within 10% of `model.predict` on the same arrays",
        "",
        f"- Prediction step: {verdict(median(pair_ratios))} (pairs: "
        f"{', '.join(f'{r:.2f}' for r in pair_ratios)} of `model.predict`'s rows/s).",
        f"- Whole command after start-up, .npy input: {verdict(middle['model.predict'] / after['npy'])}.",
        f"- Whole command after start-up, CSV input: {verdict(middle['model.predict'] / after['csv'])}.",
        "",
        "## Memory",
        "",
        f"CSV rows are read, predicted and written {CSV_CHUNK_ROWS:,} at a time (.npy rows "
        f"{CHUNK_ROWS:,} at a time), so `dltool predict`'s peak memory grows by "
        f"{peak['csv'] - peak['startup']:.0f} MiB (CSV) and {peak['npy'] - peak['startup']:.0f} MiB "
        f"(.npy) from 1 row to {rows:,} rows; the plain script's by "
        f"{peak['plain_1024'] - peak['plain_startup']:.0f} MiB (it holds every row).",
        "",
        "## Noise",
        "",
        f"Load average {load_before:.1f} before and {load_after:.1f} after, on {cores} cores; the "
        f"slowest of a measure's {repeats} runs was up to {noisiest:.2f}x its fastest.",
    ]
    if max(load_before, load_after) > 0.5 * cores or noisiest > 1.25:
        lines.append(
            "The CPU was shared with other processes while this ran, so single timings are "
            "noisy; the medians of alternating runs are the figures to compare."
        )
    (HERE / "results-predict.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def targets(wall: dict[str, float], after: dict[str, float], middle: dict[str, float], rows: int) -> list[str]:  # fmt: skip
    """Issue 17's two targets for the whole `dltool predict` command on the CSV, each judged,
    and each miss with its measured reason."""
    from dltool.pipelines import PREDICT_STEPS_PER_CALL  # TensorFlow: loaded by now

    startup, calls = wall["startup"], middle["csv:predict"]

    def whole(other: str, theirs: float, theirs_after: float) -> str:
        """Why a whole-process comparison misses: start-up, or the time after it."""
        return (
            f"`dltool predict`'s start-up alone (the command on 1 row) takes {startup:.2f} s, "
            f"{startup / theirs:.2f}x {other}'s whole time; after start-up it takes "
            f"{after['csv']:.2f} s against {theirs_after:.2f} s"
        )

    def strict(other: str, theirs: float) -> str:
        """Why an after-start-up comparison misses: dltool's own phases (in process)."""
        return (
            f"dltool's model calls alone take {calls:.2f} s ({calls / theirs:.2f}x {other}; "
            f"{rows:,} rows in {CSV_CHUNK_ROWS:,}-row calls), and its main thread also waits "
            f"{middle['csv:read']:.2f} s reading and {middle['csv:write']:.2f} s for the writer"
        )

    plain_after = wall["plain"] - wall["plain_startup"]
    checks = [  # (what, dltool's seconds, the other side's, the limit, why a miss)
        ("Against the plain script, whole processes (Keras' default batch size)", wall["csv"], wall["plain"], PLAIN_LIMIT,
         whole("the plain script", wall["plain"], plain_after)),
        (f"Against the plain script with batch size {BATCH_SIZE}, whole processes", wall["csv"], wall["plain_1024"], PLAIN_LIMIT,
         whole("the plain script", wall["plain_1024"], after["plain_1024"])),
        (f"Against the plain script with batch size {BATCH_SIZE}, both after start-up", after["csv"], after["plain_1024"], PLAIN_LIMIT,
         strict("the plain script's time after start-up", after["plain_1024"])),
        ("Against `model.predict` alone, whole processes", wall["csv"], wall["alone"], ALONE_LIMIT,
         whole("`model.predict` alone", wall["alone"], after["alone"])),
        ("Against `model.predict` alone, strictly: `dltool predict` after start-up against `model.predict` in memory (in process)", after["csv"], middle["model.predict"], ALONE_LIMIT,
         strict("`model.predict` in memory", middle["model.predict"])),
    ]  # fmt: skip
    lines = [
        f"## Targets: `dltool predict` on {rows:,} CSV rows, at most {PLAIN_LIMIT}x the plain "
        f"script and at most {ALONE_LIMIT}x `model.predict` alone",
        "",
    ]
    for what, ours, theirs, limit, why in checks:
        missed = ours > limit * theirs
        lines.append(f"- {what}: {judged(ours, theirs, limit)}{f'. Why: {why}' if missed else ''}.")
    lines += [
        "",
        f"Start-up (each command on 1 row): `dltool predict` {startup:.2f} s, the plain script "
        f"{wall['plain_startup']:.2f} s, `model.predict` alone {wall['alone_startup']:.2f} s "
        "(importing Keras, loading the model, one call). In this process, after `model.predict` "
        f"ran in it, `predict_file` on the CSV took {middle['csv']:.2f} s "
        f"({middle['csv'] / middle['model.predict']:.2f}x `model.predict` in memory, model "
        "loading included); the figures above are the command as it is run, a process of its own.",
        "",
        "What was tried, measured in this run: numbers formatted by integer arithmetic and rows "
        "built by numpy (the writer now takes "
        f"{middle['csv:write_behind']:.2f} s for {rows:,} rows); the writer in a thread beside "
        f"the model calls (`predict_file` on the CSV {middle['csv']:.2f} s with it, "
        f"{middle['csv_inline']:.2f} s without: {middle['csv'] / middle['csv_inline']:.2f}x); "
        f"{CSV_CHUNK_ROWS:,}-row CSV chunks, fewer model calls than 50,000-row ones "
        "(src/dltool/inputs.py); the model calls run "
        f"{PREDICT_STEPS_PER_CALL} batches per call (src/dltool/pipelines.py, the same outputs): "
        f"{middle['npy:predict']:.2f} s for the rows of the .npy, where one batch per call takes "
        f"{middle['one_per_call']:.2f} s for the rows in memory. A thread reading ahead was tried "
        "and left out: on 2 cores what it hid, the model calls lost.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
