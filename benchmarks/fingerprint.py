"""What the data fingerprint costs: run.json's ``data_fingerprint`` on a 6,000-image folder
and a 1,000,000-row CSV, both streamed from disk (the case where hashing must not load the
data), beside the time it takes to load the same data.

    .venv/bin/python benchmarks/fingerprint.py [--data /tmp/dltool-bench-data] [--images 6000] [--rows 1000000]

The folder and the table are made by benchmarks/data_scale.py's helpers (and reused).
The first hash of a file may read it from disk; the figure given is the second, warm one,
as a run finds the files after its own pre-scan read them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_scale import csv_config, image_config, make_csv, make_folder

from dltool.config import validate_config
from dltool.data import load_dataset
from dltool.fingerprint import fingerprint_dataset


def measure(config: dict, what: str) -> None:
    config["data"]["loading"] = "stream"
    experiment = validate_config(config, what)
    started = time.perf_counter()
    dataset = load_dataset(experiment.data, 0, experiment.task)
    loaded = time.perf_counter() - started
    cold = fingerprint_dataset(dataset, experiment.data).seconds
    warm = fingerprint_dataset(dataset, experiment.data).seconds
    print(f"{what}: load {loaded:.2f} s; fingerprint {cold:.2f} s cold, {warm:.2f} s warm")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dltool-bench-data")  # fmt: skip
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    arguments = parser.parse_args()
    arguments.data.mkdir(parents=True, exist_ok=True)
    folder = make_folder(arguments.data, arguments.images)
    measure(image_config(folder, arguments.images), f"{arguments.images:,} 128x128 PNGs")
    table = make_csv(arguments.data, arguments.rows)
    measure(csv_config(table, arguments.rows), f"{arguments.rows:,}-row CSV")


if __name__ == "__main__":
    main()
