"""`dltool data`: the dataset a config trains on, written out for people to look at."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, tiny_config


def test_table_to_csv(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(data={"validation_split": 0.25})
    result = run_cli("data", write_config(config), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test.csv",
        "train.csv",
        "validation.csv",
    ]
    with open(tmp_path / "out" / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 150
    assert list(rows[0]) == ["age", "hours_studied", "previous_score", "label"]
    assert {row["label"] for row in rows} == {"fail", "pass"}
    assert "examples per class" in result.stdout
    assert "│ validation │       50 │ [3]" in result.stdout


def test_images_to_png_folders(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "digits"
    result = run_cli("data", CONFIGS / "digits_cnn.yaml", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["test", "train", "validation"]
    assert sorted(p.name for p in (out / "train").iterdir()) == [str(d) for d in range(10)]
    pngs = list(out.glob("*/*/*.png"))
    assert len(pngs) == 1797
    image = np.asarray(Image.open(pngs[0]))
    assert image.shape == (8, 8)
    assert image.max() > 200  # 0..16 pixels stretched to be visible, as the note says
    # A whole factor, so predict/evaluate get the 0..16 pixels back exactly.
    assert set(np.unique(image).tolist()) <= set(range(0, 241, 15))
    assert "pixel values were multiplied by 15 in the PNGs" in result.stdout


@pytest.mark.parametrize(
    ("pixels", "source", "scale"),
    [
        pytest.param(np.full((2, 4, 4, 1), 16.0), "builtin", 15, id="digits-0..16"),
        pytest.param(np.full((2, 4, 4, 3), 1.0), "numpy", 255, id="unit-range"),
        pytest.param(np.full((2, 4, 4, 1), 255.0), "builtin", 1, id="bytes"),
        pytest.param(np.full((2, 4, 4, 1), 90.0), "image_folder", 1, id="dark-image-files"),
        pytest.param(np.zeros((2, 4, 4, 1)), "numpy", 1, id="all-black"),
        pytest.param(np.full((2, 3), 2.0), "csv", 1, id="table"),
    ],
)
def test_image_file_scale(pixels: np.ndarray, source: str, scale: int) -> None:
    from dltool.data import Dataset
    from dltool.inputs import image_file_scale

    dataset = Dataset(x_train=pixels, y_train=np.zeros(len(pixels)))
    assert image_file_scale(dataset, source) == scale


def test_refuses_a_non_empty_folder(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("data", write_config(tiny_config()), "--out", out)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {out}: exists and is not empty (choose a new folder; nothing is overwritten)\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
