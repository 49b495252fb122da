"""Bad data through `dltool train`: one line on stderr, exit 2, no run folder, for every source.

The loaders' own tests (test_data_*.py) cover each message in detail; these prove the
command line turns them into a refusal before training starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _experiment(data: dict[str, Any], input_shape: list[int], units: int) -> dict[str, Any]:
    return {
        "name": "bad-data",
        "seed": 1,
        "data": data,
        "model": {
            "input_shape": input_shape,
            "layers": [
                {"type": "flatten"},
                {"type": "dense", "units": units, "activation": "softmax"},
            ],
        },
        "training": {"loss": "sparse_categorical_crossentropy", "epochs": 1},
    }


def _files(folder: Path) -> None:
    """One of each broken input, small."""
    import matplotlib.pyplot as plt

    (folder / "table.csv").write_text("x1,x2,y\n1,2,a\n3,oops,b\n5,6,a\n7,8,b\n1,1,a\n2,2,b\n")
    (folder / "header_only.csv").write_text("x1,x2,y\n")
    x = np.random.default_rng(0).random((30, 3)).astype("float32")
    labels = np.arange(30) % 3
    labels[5] = 7  # 3 softmax units: label 7 has no output
    np.savez(folder / "range.npz", x_train=x, y_train=labels)
    np.savez(folder / "length.npz", x_train=x, y_train=np.arange(29) % 3)
    (folder / "text.npy").write_text("not an array")
    np.save(folder / "y.npy", np.zeros(30, dtype="int64"))
    (folder / "pictures" / "only").mkdir(parents=True)
    for index in range(3):
        plt.imsave(folder / "pictures" / "only" / f"{index}.png", np.ones((8, 8)), cmap="gray")


CASES = [
    pytest.param(
        {"source": "csv", "path": "missing.csv", "target": "y"}, [2], 2,
        r"missing\.csv: file not found", id="csv-missing-file",
    ),
    pytest.param(
        {"source": "csv", "path": "table.csv", "target": "label"}, [2], 2,
        r"table\.csv: data\.target: no column 'label' \(the columns are 'x1', 'x2', 'y'\)",
        id="csv-missing-column",
    ),
    pytest.param(
        {"source": "csv", "path": "table.csv", "target": "y"}, [2], 2,
        r"table\.csv: line 3, column 'x2': 'oops' is not a number", id="csv-non-numeric",
    ),
    pytest.param(
        {"source": "csv", "path": "header_only.csv", "target": "y"}, [2], 2,
        r"header_only\.csv: no data rows \(only a header line; expected rows below it\)", id="csv-empty",
    ),
    pytest.param(
        {"source": "numpy", "path": "range.npz"}, [3], 3,
        r"data: train labels \['7'\] are out of range for 3 output units \(expected integers 0\.\.2",
        id="label-out-of-range",
    ),
    pytest.param(
        {"source": "numpy", "path": "length.npz"}, [3], 3,
        r"x_train: 30 examples but .*y_train has 29 labels \(expected the same number\)",
        id="length-mismatch",
    ),
    pytest.param(
        {"source": "numpy", "path": "text.npy", "labels_path": "y.npy"}, [3], 3,
        r"text\.npy: not a NumPy \.npy file \(it does not start like one\)", id="npy-not-an-array",
    ),
    pytest.param(
        {"source": "image_folder", "path": "pictures", "image_size": [8, 8], "color_mode": "grayscale"},
        [8, 8, 1], 2,
        r"pictures: data\.path: found 1 class folder \(only\); expected at least 2 class folders",
        id="images-one-class",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("data", "input_shape", "units", "message"), CASES)
def test_bad_data_refused_before_training(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    data: dict[str, Any],
    input_shape: list[int],
    units: int,
    message: str,
) -> None:
    _files(tmp_path)
    runs = tmp_path / "runs"
    result = run_cli(
        "train", write_config(_experiment(data, input_shape, units)), "--runs-dir", runs
    )
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not runs.exists()  # refused before any run folder


def test_data_export_seed(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Without a seed in the config, `dltool data` says which one it split with; --seed picks."""
    from conftest import tiny_config

    config = tiny_config()
    del config["seed"]
    path = write_config(config)
    first = run_cli("data", path, "--out", tmp_path / "a", "--seed", "7")
    assert first.exit_code == 0, first.stderr
    assert f"note: {path} sets no seed; splitting with seed 7" in first.stderr
    again = run_cli("data", path, "--out", tmp_path / "b", "--seed", "7")
    assert again.exit_code == 0
    assert (tmp_path / "a" / "train.csv").read_text() == (tmp_path / "b" / "train.csv").read_text()

    seeded = write_config(tiny_config(), "seeded.yaml")
    clash = run_cli("data", seeded, "--out", tmp_path / "c", "--seed", "7")
    assert clash.exit_code == 2
    assert clash.stderr == (
        f"error: {seeded}: seed: the file sets 3 (received --seed 7; "
        "expected no --seed, or a config without a seed)\n"
    )
    assert not (tmp_path / "c").exists()
