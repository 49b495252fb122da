"""What ``training.deterministic`` costs: fit seconds of the same config with it off and on,
alternated in one process (so the import and the machine's load fall alike on both).

    .venv/bin/python benchmarks/deterministic.py [--repeats 3] [--epochs 10]

Configs: configs/digits_cnn.yaml (a small CNN, early stopping off) and
configs/student_pass.yaml (an MLP). The median fit time of each is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from rich.console import Console

from dltool.config import load_config
from dltool.training import run_training

REPO = Path(__file__).resolve().parents[1]


def fit_seconds(config_path: Path, deterministic: bool, epochs: int, runs: Path) -> float:
    overrides = [
        f"training.deterministic={str(deterministic).lower()}",
        f"training.epochs={epochs}",
    ]
    config = load_config(config_path, overrides)
    if config.training.early_stopping is not None:
        config = config.model_copy(update={"training": config.training.model_copy(update={"early_stopping": None})})  # fmt: skip
    result = run_training(
        config, source=str(config_path), runs_dir=runs, console=Console(quiet=True)
    )
    return float(json.loads((result.path / "run.json").read_text())["timings"]["fit"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("digits_cnn.yaml", "student_pass.yaml"):
            seconds: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(arguments.repeats):
                for deterministic in (False, True):
                    seconds[deterministic].append(fit_seconds(REPO / "configs" / name, deterministic, arguments.epochs, Path(scratch)))  # fmt: skip
            off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
            print(f"{name}: fit {off:.2f} s off, {on:.2f} s deterministic ({on / off:.2f}x); all: {seconds}")  # fmt: skip


if __name__ == "__main__":
    main()
