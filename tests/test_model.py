"""model.py: building and compiling the model, and its run-time options."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_config
from dltool.backend import import_keras
from dltool.config import validate_config

import_keras()  # quietly, before dltool.model imports keras

from dltool.model import steps_per_execution  # noqa: E402


@pytest.mark.parametrize(
    ("configured", "batches", "expected"),
    [
        (0, 1, 1),
        (0, 255, 1),
        (0, 256, 32),
        (0, 100_000, 32),
        (1, 100_000, 1),
        (4, 1, 4),
        (64, 10_000, 64),
    ],
    ids=[
        "auto-1-batch",
        "auto-255-batches",
        "auto-256-batches",
        "auto-100k-batches",
        "explicit-1",
        "explicit-4-short-epoch",
        "explicit-64",
    ],
)
def test_steps_per_execution_resolution(configured: int, batches: int, expected: int) -> None:
    # The documented rule (README, reference): auto picks 32 when an epoch has 256+ batches.
    config = validate_config(
        tiny_config(training={"steps_per_execution": configured}), source="<test>"
    )
    assert steps_per_execution(config, batches) == expected


@pytest.mark.parametrize(("batch_size", "expected"), [(20, 32), (21, 1)])
def test_auto_steps_per_execution_needs_small_batches(batch_size: int, expected: int) -> None:
    """Batches of 128x128 RGB float32 inputs (196,608 bytes each): 20 fit in 4 MB, 21 do not."""
    config = tiny_config(
        model={
            "input_shape": [128, 128, 3],
            "layers": [{"type": "flatten"}, {"type": "dense", "units": 3}],
        },
        training={"batch_size": batch_size, "loss": "sparse_categorical_crossentropy"},
    )
    config["data"] = {"source": "shapes", "image_size": 128, "color_mode": "rgb"}
    assert steps_per_execution(validate_config(config, source="<test>"), 1000) == expected


@pytest.mark.slow
def test_fit_traces_the_train_step_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics' and optimizer's variables exist before fit: TensorFlow traced the whole
    step a second time when the first trace created them (a second per fit on 2 cores)."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    from dltool import api

    traces: list[object] = []
    original = TensorFlowTrainer.train_step

    def counted(self: TensorFlowTrainer, data: object) -> object:
        traces.append(data)
        return original(self, data)

    monkeypatch.setattr(TensorFlowTrainer, "train_step", counted)
    config = tiny_config(
        data={"validation_split": 0.25},
        training={"epochs": 2, "metrics": ["accuracy", "auc"], "optimizer": {"name": "adam"}},
    )
    result = api.train(config, runs_dir=tmp_path, quiet=True)
    assert result.status == "completed"
    assert len(traces) == 1
