"""Benchmark: rows/s of an exported model in ONNX Runtime and LiteRT (TFLite) against `model.predict`.

Two shipped configs, trained at smoke size (throughput does not depend on how well a
model learned): `student_pass_rule` (an MLP on 3 columns) and `digits_cnn` (a CNN on 8x8
images). Each is exported with `dltool export` (so the exports passed the check), then the
same rows are predicted in this process, alternately (keras, onnx, tflite, keras, ...) so
machine noise hits every runtime alike:

- `model.predict(x, batch_size=B)` on the model.keras Keras loads;
- dltool's ONNX Runtime and LiteRT runtimes (what `dltool predict` runs on an export),
  B rows per call.

B is 1024 (dltool predict's default --batch-size) on ``--rows`` rows, and 1 (one example
per call, as a server answering single requests) on ``--single-rows`` rows. Every figure is
the median of ``--repeats`` runs (at least 3), after one warm-up run. Not part of `make test`.

    .venv/bin/python benchmarks/export_predict.py [--rows 200000] [--single-rows 500] [--repeats 3]

Writes benchmarks/results-export.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
from timing import cpu_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIGS = ("student_pass_rule", "digits_cnn")


def train_and_export(name: str, work: Path) -> Path:
    """A smoke-sized run of ``configs/NAME.yaml``, exported to ONNX and TFLite (checked)."""
    from dltool.api import train
    from dltool.export import export_run

    result = train(REPO / "configs" / f"{name}.yaml", runs_dir=work, smoke=True, quiet=True)
    for format_name in ("onnx", "tflite"):
        export_run(result.path, format_name, None, overwrite=False)
    return result.path


def inputs(run: Path, rows: int) -> np.ndarray:
    """``rows`` random examples in the range the model was trained on."""
    shape = json.loads((run / "run.json").read_text())["input_shape"]
    rng = np.random.default_rng(0)
    if len(shape) == 3:  # digits: pixels 0..16
        return rng.uniform(0, 16, size=(rows, *shape)).astype("float32")
    columns = [rng.integers(17, 31, rows), rng.uniform(0, 40, rows), rng.uniform(0, 100, rows)]
    return np.column_stack(columns).astype("float32")


def predictors(run: Path) -> dict[str, Callable[[np.ndarray, int], np.ndarray]]:
    """Each runtime's predict(x, batch_size)."""
    from dltool.model import load_trained_model
    from dltool.runtimes import OnnxRuntime, TfliteRuntime

    model = load_trained_model(run / "model.keras")
    onnx = OnnxRuntime(run / "exports" / "onnx" / "model.onnx")
    tflite = TfliteRuntime(run / "exports" / "tflite" / "model.tflite")
    return {
        "model.predict": lambda x, b: model.predict(x, batch_size=b, verbose=0),
        "ONNX Runtime": onnx.predict,
        "LiteRT (TFLite)": tflite.predict,
    }


def measure(run: Path, rows: int, batch_size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per run of each runtime on the same rows, alternately, after a warm-up."""
    x = inputs(run, rows)
    runtimes = predictors(run)
    reference = runtimes["model.predict"](x, batch_size)
    seconds: dict[str, list[float]] = {name: [] for name in runtimes}
    for name, predict in runtimes.items():  # warm-up, and the outputs agree
        difference = float(np.abs(predict(x, batch_size) - reference).max())
        if difference > 1e-4:
            raise SystemExit(f"{name}: outputs differ from model.predict by {difference}")
    for _ in range(repeats):
        for name, predict in runtimes.items():
            started = time.perf_counter()
            predict(x, batch_size)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows at batch size 1024")
    parser.add_argument("--single-rows", type=int, default=500, help="rows at one per call")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measure (at least 3)")
    parser.add_argument("--output", type=Path, default=HERE / "results-export.md")
    arguments = parser.parse_args()
    repeats = max(3, arguments.repeats)
    load_before = os.getloadavg()[0]
    table: list[str] = []
    spreads: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in CONFIGS:
            run = train_and_export(name, Path(scratch))
            params = json.loads((run / "run.json").read_text())["params"]
            for batch_size, rows in ((1024, arguments.rows), (1, arguments.single_rows)):
                seconds = measure(run, rows, batch_size, repeats)
                base = statistics.median(seconds["model.predict"])
                for runtime, values in seconds.items():
                    middle = statistics.median(values)
                    spreads.append(max(values) / min(values))
                    table.append(
                        f"| {name} ({params:,} parameters) | {batch_size} | {runtime} | {rows:,} | "
                        f"{middle:.3f} | {rows / middle:,.0f} | {base / middle:.1f}x |"
                    )
    load_after = os.getloadavg()[0]
    lines = [
        "# Benchmark: predicting with an export (ONNX Runtime, LiteRT) against `model.predict`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores ({platform.machine()}), Python "
        f"{platform.python_version()}, Keras {version('keras')}, TensorFlow {version('tensorflow')}, "
        f"onnxruntime {version('onnxruntime')}, ai-edge-litert {version('ai-edge-litert')}; "
        f"{time.strftime('%Y-%m-%d')}. Every figure is the median of {repeats} runs in one "
        "process, the runtimes alternating, after a warm-up; the inputs are random rows in the "
        "training range, in memory (no file reading or CSV writing).",
        "",
        "| model | batch size | runtime | rows | seconds | rows/s | speed-up over `model.predict` |",
        "|---|---|---|---|---|---|---|",
        *table,
        "",
        "## Noise",
        "",
        f"Load average {load_before:.1f} before and {load_after:.1f} after, on {os.cpu_count()} "
        f"cores; the slowest of a measure's {repeats} runs was up to {max(spreads):.2f}x its fastest.",
        "",
        "    .venv/bin/python benchmarks/export_predict.py",
        "",
    ]
    arguments.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
