"""Benchmark: data bigger than memory. dltool against the plain Keras script, as whole processes.

Image folders: synthetic 128x128 RGB PNGs in two classes (noise around a darker or
a lighter mean, about 47 KB each), 2,000, 6,000 and 25,000 of them, generated once
into --data (default /tmp/dltool-bench-data). Each size trains the same small CNN
for 1 epoch, batch 64, 20% held out for testing, on both sides:

- plain: benchmarks/plain/image_folder.py (``image_dataset_from_directory``, fit,
  evaluate, predict, save);
- dltool: ``dltool train`` of the equivalent config (``data.loading: auto``).

Small folders: the shapes example's images as PNG files, in memory against streamed:
the measurement behind ``loading: auto``.

Tables: a 10,000,000-row CSV of 4 numeric features and a class label (about 330 MB),
trained by ``dltool train`` for 1 epoch, batch 4096 (streamed: it is over 128 MB).

Peak memory is each process's max RSS; wall time is the whole process. Sides alternate
(A B A B) so that machine noise hits both alike. Writes benchmarks/results-data.md.

    .venv/bin/python benchmarks/data_scale.py [--sizes 2000 6000 25000] [--runs 3] [--csv-rows 10000000] [--small 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from timing import Measured, run_timed

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
SEED = 3
LAYERS = [
    {"type": "rescaling", "scale": "1/255"},
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "activation": "relu"},
    {"type": "max_pooling2d", "pool_size": 4},
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "max_pooling2d", "pool_size": 4},
    {"type": "flatten"},
    {"type": "dense", "units": 2, "activation": "softmax"},
]


def make_folder(root: Path, count: int) -> Path:
    """``count`` 128x128 RGB PNGs, half 'dark' and half 'light'; made once, then reused."""
    folder = root / f"images-{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(count)
    for name, mean in (("dark", 110), ("light", 145)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for number in range(count // 2):
            pixels = np.clip(rng.normal(mean, 40, (128, 128, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{number:05d}.png", compress_level=1)
    done.touch()
    return folder


def make_csv(root: Path, rows: int) -> Path:
    """``rows`` rows of 4 features and a label (the sign of a noisy linear rule)."""
    path = root / f"table-{rows}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(rows)
    partial = path.with_suffix(".partial")
    with open(partial, "w") as out:
        out.write("a,b,c,d,label\n")
        for start in range(0, rows, 1_000_000):
            x = rng.normal(size=(min(1_000_000, rows - start), 4)).round(4)
            label = (x @ [1.0, -2.0, 0.5, 0.0] + rng.normal(0, 0.5, len(x)) > 0).astype(int)
            np.savetxt(out, np.column_stack([x, label]), fmt=["%.4f"] * 4 + ["%d"], delimiter=",")
    partial.rename(path)
    return path


def dltool(config: dict, work: Path) -> Measured:
    path = work / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return run_timed([str(BIN / "dltool"), "train", str(path), "--runs-dir", str(work / "runs")], REPO)  # fmt: skip


def run_json(work: Path) -> dict:
    newest = max((work / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return json.loads((newest / "run.json").read_text())


def image_config(folder: Path, count: int) -> dict:
    return {
        "name": f"images{count}",
        "seed": SEED,
        "model": {"input_shape": [128, 128, 3], "layers": LAYERS},
        "training": {
            "loss": "sparse_categorical_crossentropy",
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "metrics": ["accuracy"],
            "batch_size": 64,
            "epochs": 1,
        },
        "data": {
            "source": "image_folder",
            "path": str(folder),
            "image_size": [128, 128],
            "test_split": 0.2,
        },
    }


def csv_config(table: Path, rows: int) -> dict:
    return {
        "name": f"csv{rows}",
        "seed": SEED,
        "model": {
            "input_shape": [4],
            "layers": [
                {"type": "dense", "units": 16, "activation": "relu"},
                {"type": "dense", "units": 1, "activation": "sigmoid"},
            ],
        },
        "training": {
            "loss": "binary_crossentropy",
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "metrics": ["accuracy"],
            "batch_size": 4096,
            "epochs": 1,
        },
        "data": {"source": "csv", "path": str(table), "target": "label", "test_split": 0.1},
    }


def small_folder(root: Path, work: Path, runs: int) -> list[str]:
    """Why ``loading: auto`` keeps small folders in memory: configs/shapes_cnn.yaml's images
    (2,400 32x32 grey PNGs, 7.7 MB of float32 pixels) trained from memory and streamed."""
    folder = root / "shapes-png"
    if not (folder / "train").is_dir():
        run_timed([str(BIN / "dltool"), "data", str(REPO / "configs" / "shapes_cnn.yaml"), "--out", str(folder)], REPO)  # fmt: skip
    base = yaml.safe_load((REPO / "configs" / "shapes_cnn.yaml").read_text())
    measured: dict[str, list[Measured]] = {"memory": [], "stream": []}
    for _ in range(runs):
        for loading in measured:
            config = {
                **base,
                "name": f"shapes-{loading}",
                "training": {**base["training"], "early_stopping": None, "epochs": 10},
                "data": {
                    "source": "image_folder",
                    "path": str(folder / "train"),
                    "test_path": str(folder / "test"),
                    "image_size": [32, 32],
                    "color_mode": "grayscale",
                    "validation_split": 0.1,
                    "loading": loading,
                },
            }
            measured[loading].append(dltool(config, work))
    lines = [
        "",
        "Small folders: configs/shapes_cnn.yaml's 2,400 images as PNG files (32x32 grey, 7.7 MB "
        "of float32 pixels), 10 epochs, dltool in memory against dltool streamed:",
        "",
        "| loading | wall | peak |",
        "|---|---|---|",
    ]
    for loading, side in measured.items():
        wall = statistics.median(m.wall for m in side)
        peak = statistics.median(m.peak_mib for m in side)
        lines.append(f"| {loading} | {wall:.1f} s | {peak / 1024:.2f} GB |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 6000, 25000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--csv-rows", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=1, help="0: skip the small-folder comparison")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dltool-bench-data")  # fmt: skip
    parser.add_argument("--output", type=Path, default=HERE / "results-data.md")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Data bigger than memory: dltool against plain Keras",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"load average at the start {os.getloadavg()[0]:.1f}; {args.runs} run(s) of each side, "
        "alternating; medians. Written by `benchmarks/data_scale.py`.",
        "",
        "| images | PNG size | dltool peak | plain peak | peak ratio | dltool wall | plain wall | wall ratio | dltool loading | pre-scan | fit | evaluate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for count in args.sizes:
            folder = make_folder(args.data, count)
            png = sum(f.stat().st_size for f in folder.rglob("*.png")) / 1e6
            ours: list[Measured] = []
            plain: list[Measured] = []
            info: dict = {}
            for _ in range(args.runs):
                ours.append(dltool(image_config(folder, count), work))
                info = run_json(work)
                plain.append(run_timed([sys.executable, str(HERE / "plain" / "image_folder.py"), str(folder), str(SEED)], HERE / "plain"))  # fmt: skip
            peak, plain_peak = (
                statistics.median(m.peak_mib for m in side) for side in (ours, plain)
            )
            wall, plain_wall = (statistics.median(m.wall for m in side) for side in (ours, plain))
            timings = info.get("timings", {})
            loading = info["data"]["loading"]
            lines.append(
                f"| {count:,} | {png:,.0f} MB | {peak / 1024:.2f} GB | {plain_peak / 1024:.2f} GB | "
                f"{peak / plain_peak:.2f}x | {wall:.1f} s | {plain_wall:.1f} s | {wall / plain_wall:.2f}x | "
                f"{loading['mode']} | {loading['prescan_s']:.2f} s | {timings.get('fit', 0):.1f} s | "
                f"{timings.get('evaluate', 0):.1f} s |"
            )
            print(lines[-1], flush=True)
        if args.small:
            lines += small_folder(args.data, work, args.runs)
        if args.csv_rows:
            table = make_csv(args.data, args.csv_rows)
            cache = work / "cache"
            env_note = "first run converts the CSV into the cache; the second reuses it"
            measured = []
            for _ in range(2):
                os.environ["DLTOOL_CACHE_DIR"] = str(cache)
                measured.append((dltool(csv_config(table, args.csv_rows), work), run_json(work)))
            lines += [
                "",
                "| CSV rows | file | run | peak | wall | data | build (normalization) | fit | evaluate |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for number, (m, info) in enumerate(measured, start=1):
                t = info.get("timings", {})
                lines.append(
                    f"| {args.csv_rows:,} | {table.stat().st_size / 1e6:,.0f} MB | {number} | "
                    f"{m.peak_mib / 1024:.2f} GB | {m.wall:.1f} s | {t.get('data', 0):.1f} s | "
                    f"{t.get('build', 0):.1f} s | "
                    f"{t.get('fit', 0):.1f} s | {t.get('evaluate', 0):.1f} s |"
                )
                print(lines[-1], flush=True)
            lines += ["", f"CSV: {env_note}."]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
