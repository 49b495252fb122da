"""dltool's Keras callbacks, fed known epoch values: which epoch ``save_best`` keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dltool import callbacks
from dltool.config import SaveBest
from dltool.rundir import BEST_MODEL, RunDir


@pytest.mark.parametrize(
    ("monitor", "values", "mode", "kept"),
    [
        pytest.param("val_top_3_accuracy", [0.5, 0.9, 0.7, 0.95, 0.1], "auto", [1, 2, 4], id="top-k-auto-max"),
        pytest.param("val_accuracy", [0.5, 0.4, 0.8], "auto", [1, 3], id="accuracy-auto-max"),
        pytest.param("val_auc", [0.6, 0.7, 0.65], "auto", [1, 2], id="auc-auto-max"),
        pytest.param("val_loss", [0.5, 0.3, 0.4, 0.2], "auto", [1, 2, 4], id="loss-auto-min"),
        pytest.param("val_mean_absolute_error", [3.0, 4.0, 1.0], "auto", [1, 3], id="mae-auto-min"),
        pytest.param("val_accuracy", [0.5, 0.4, 0.8], "min", [1, 2], id="explicit-min"),
        pytest.param("val_loss", [0.5, float("nan"), 0.7], "max", [1, 3], id="nan-skipped"),
    ],
)  # fmt: skip
def test_save_best_keeps_the_best_epoch_in_the_metrics_direction(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    monitor: str,
    values: list[float],
    mode: str,
    kept: list[int],
) -> None:
    run = RunDir.create(tmp_path / "runs", "best")
    saver = SaveBest(monitor=monitor, mode=mode).callback(run)  # as training builds it
    written: list[tuple[int, Path]] = []

    def save(model: Any, path: Path) -> None:
        written.append((saver.best_epoch, path))

    monkeypatch.setattr(callbacks, "save_model", save)
    for epoch, value in enumerate(values):
        saver.on_epoch_end(epoch, {monitor: value})
    assert written == [(epoch, run.file(BEST_MODEL)) for epoch in kept]
