"""Everything that can refuse an experiment, before its run folder exists.

:func:`prepare` loads and checks the data, builds (or takes) the model and shapes
the labels for the loss. Nothing here writes a file: a refused config leaves
nothing behind. :mod:`dltool.training` takes a :class:`Prepared` from here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from dltool.backend import IMPORT_SECONDS, import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import keras``

import keras  # noqa: E402

from dltool.config import ExperimentConfig  # noqa: E402
from dltool.data import Dataset, load_dataset, naming_config  # noqa: E402
from dltool.data.rows import nonfinite_rows  # noqa: E402
from dltool.errors import ConfigError, DataError  # noqa: E402
from dltool.evaluation import model_labels  # noqa: E402
from dltool.model import build_model, init_from_run  # noqa: E402


def check_inputs(dataset: Dataset, config: ExperimentConfig, source: str) -> None:
    """Refuse inputs the model cannot take, or would train on silently wrong (NaN)."""
    problems: list[str] = []
    expected_shape = list(config.model.input_shape)
    for split, (x, _) in dataset.splits().items():
        if list(x.shape[1:]) != expected_shape:
            problems.append(
                f"{source}: model.input_shape: does not match the data (received "
                f"{expected_shape}; expected {list(x.shape[1:])}, the shape of one {split} example)"
            )
            break
        rows = nonfinite_rows(x)
        if rows:
            problems.append(f"data: {split} rows {rows} contain NaN or infinity")
    if problems:
        raise DataError(*problems)


def check_labels(dataset: Dataset, config: ExperimentConfig, outputs: int) -> None:
    """Refuse labels the loss cannot use (Keras gives NaN on GPU for out-of-range classes)."""
    problems: list[str] = []
    task = config.task
    if task in ("binary", "multiclass"):  # whatever the source: a CSV refused this, an .npz did not
        rows = np.asarray(dataset.y_train).reshape(len(dataset.y_train), -1)
        # one column (class indices): a flat unique, 240x faster than by rows on 9M labels
        classes = np.unique(rows[:, 0])[:, None] if rows.shape[1] == 1 else np.unique(rows, axis=0)
        if len(classes) < 2:
            names = dataset.class_names or []
            value = classes[0].tolist() if len(classes) else []
            shown = names[value[0]] if len(value) == 1 and 0 <= value[0] < len(names) else value
            problems.append(
                f"data: the training labels have 1 class ({shown}); {config.training.loss} "
                f"needs at least 2 (every training label is the same)"
            )
    for split, (_, y) in dataset.splits().items():
        labels = np.asarray(y).reshape(len(y), -1)
        if task == "binary":
            bad = np.unique(labels[(labels != 0) & (labels != 1)])
            if bad.size:
                problems.append(
                    f"data: {split} labels {bad[:5].tolist()} are not 0 or 1 "
                    f"(binary_crossentropy expects 0/1 labels)"
                )
        elif task == "multiclass" and labels.shape[1] == 1:
            out_of_range = (labels < 0) | (labels >= outputs) | (labels != np.round(labels))
            bad = np.unique(labels[out_of_range])
            if bad.size:
                names = dataset.class_names or []
                shown = [
                    names[int(b)] if 0 <= b < len(names) and b == int(b) else b
                    for b in bad[:5].tolist()
                ]
                problems.append(
                    f"data: {split} labels {shown} are out of range for {outputs} "
                    f"output units (expected integers 0..{outputs - 1}"
                    + (
                        f"; the data has {len(names)} classes, so the last layer needs {len(names)} units)"
                        if len(names) > outputs
                        else ")"
                    )
                )
    if problems:
        raise DataError(*problems)


def _prepare_labels(y: np.ndarray, config: ExperimentConfig, outputs: int) -> np.ndarray:
    one_hot = config.training.loss == "categorical_crossentropy"
    return model_labels(y, config.task, one_hot, outputs)


class Clock:
    """Seconds spent per phase of a run (data, build, fit, evaluate, save)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        if IMPORT_SECONDS:
            self.seconds["import"] = round(IMPORT_SECONDS[0], 3)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(
                self.seconds.get(name, 0.0) + time.perf_counter() - started, 3
            )


@dataclass
class Prepared:
    """Everything a fit needs, checked: refusals happen while building this."""

    config: ExperimentConfig
    dataset: Dataset
    model: keras.Model
    batch_size: int
    labels: dict[str, np.ndarray]
    clock: Clock


def prepare(
    config: ExperimentConfig,
    source: str,
    console: Console,
    smoke: bool,
    model: keras.Model | None = None,
) -> Prepared:
    """Load and check the data and build (or take) the model; nothing is written.

    Raises:
        ConfigError, DataError: the experiment is refused.
    """
    if config.training.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:  # TensorFlow 2.21 does not bring it
            raise ConfigError(
                f"{source}: training.tensorboard: the tensorboard package is not installed "
                "(received true; expected false, or install it: pip install 'dltool[tensorboard]')"
            )
    seed = config.seed if config.seed is not None else 0
    keras.utils.set_random_seed(seed)  # Python's, NumPy's and the backend's generators
    deterministic(config.training.deterministic)
    clock = Clock()
    with clock.phase("data"):
        with naming_config(source):
            dataset = load_dataset(config.data, seed, config.task)
        if smoke:
            _shrink(dataset)
        check_inputs(dataset, config, source)
    with clock.phase("build"):
        if model is None:
            model = build_model(
                config,
                dataset.x_train,
                source,
                normalize_inputs=bool(dataset.notes.get("normalize")),
            )
            if config.model.init_from is not None:
                init_from_run(model, Path(config.model.init_from), source)
    outputs = int(model.output_shape[-1])
    with naming_config(source):
        check_labels(dataset, config, outputs)
    batch_size = config.training.batch_size
    if batch_size > len(dataset.x_train):
        console.print(
            f"[yellow]note[/yellow]: training.batch_size {batch_size} is larger than the "
            f"{len(dataset.x_train)} training rows; using {len(dataset.x_train)}"
        )
        batch_size = len(dataset.x_train)
    labels = {
        name: _prepare_labels(y, config, outputs) for name, (_, y) in dataset.splits().items()
    }
    return Prepared(config, dataset, model, batch_size, labels, clock)


def deterministic(on: bool) -> None:
    """Turn TensorFlow's op determinism on or off for this process (training.deterministic).

    On, every op picks a deterministic kernel (or raises where it has none), so the same
    seed, data and machine give bit-identical weights; off again for the next run of the
    same process (a sweep, the tests), which did not ask for it.
    """
    # tf.config.experimental has enable_op_determinism only; TensorFlow's own tests turn it
    # off through this module.
    from tensorflow.python.framework import config as framework_config

    if on:
        framework_config.enable_op_determinism()
    elif framework_config.is_op_determinism_enabled():
        framework_config.disable_op_determinism()


SMOKE_ROWS = 256  # rows kept per split by --smoke: enough to exercise every code path


def _shrink(dataset: Dataset) -> None:
    """Keep the first SMOKE_ROWS rows of each split (the splits are already shuffled)."""
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            array = getattr(dataset, f"{part}_{split}")
            if array is not None:
                setattr(dataset, f"{part}_{split}", array[:SMOKE_ROWS])
