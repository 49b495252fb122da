"""model.py: building and compiling the model, and its run-time options."""

from __future__ import annotations

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
