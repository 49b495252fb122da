"""Train one experiment and fill its run folder.

Order matters: everything that can refuse the experiment (data, labels, model
shapes) happens before the run folder is created, so a refused config leaves
nothing behind. From then on the folder always says where the run got to.
"""

from __future__ import annotations

import math
import os
import platform
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dltool import __version__
from dltool.backend import import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import keras``

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from dltool import plots  # noqa: E402
from dltool.callbacks import EpochLog, StopOnNonFinite, early_stop_report, make_callbacks  # noqa: E402
from dltool.config import ExperimentConfig, resolved_dict  # noqa: E402
from dltool.data import Dataset, load_dataset  # noqa: E402
from dltool.errors import DataError, Terminated, TrainingError  # noqa: E402
from dltool.evaluation import class_report, loss_first, predict, predictions_table  # noqa: E402
from dltool.interrupts import graceful, raise_if_requested  # noqa: E402
from dltool.model import build_model, compile_model, model_summary, save_model  # noqa: E402
from dltool.rundir import (  # noqa: E402
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    RunDir,
    now_iso,
    write_csv,
    write_json,
    write_text,
    write_yaml,
)


@dataclass
class RunResult:
    """What a finished run produced."""

    path: Path
    status: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    params: int = 0
    epochs_run: int = 0


# ------------------------------------------------------------------------ data


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
        if not np.isfinite(x).all():
            rows = np.unique(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[:, 0])[:5]
            problems.append(f"data: {split} rows {rows.tolist()} contain NaN or infinity")
    if problems:
        raise DataError(*problems)


def check_labels(dataset: Dataset, config: ExperimentConfig, outputs: int) -> None:
    """Refuse labels the loss cannot use (Keras gives NaN on GPU for out-of-range classes)."""
    problems: list[str] = []
    task = config.task
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
                problems.append(
                    f"data: {split} labels {bad[:5].tolist()} are out of range for {outputs} "
                    f"output units (expected integers 0..{outputs - 1})"
                )
    if problems:
        raise DataError(*problems)


def _prepare_labels(y: np.ndarray, config: ExperimentConfig, outputs: int) -> np.ndarray:
    task = config.task
    if task == "multiclass":
        flat = np.asarray(y).reshape(len(y), -1)
        if config.training.loss == "categorical_crossentropy" and flat.shape[1] == 1:
            return keras.utils.to_categorical(flat[:, 0].astype("int64"), outputs).astype("float32")
        return flat.astype("int32") if flat.shape[1] == 1 else flat.astype("float32")
    return np.asarray(y, dtype="float32").reshape(len(y), -1)


def make_pipeline(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """A tf.data pipeline with fixed prefetch and autotune off.

    Keras' own wrapping of numpy arrays uses AUTOTUNE prefetch, which on small CPU
    machines often stalls ~1 s with the CPU idle (see KERAS-NOTES).
    """
    data = tf.data.Dataset.from_tensor_slices((np.asarray(x, dtype="float32"), y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.batch(batch_size).prefetch(2).with_options(options)


# ----------------------------------------------------------------------- train


def versions() -> dict[str, str]:
    return {
        "dltool": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_training(
    config: ExperimentConfig,
    *,
    source: str,
    runs_dir: Path,
    console: Console | None = None,
    overrides: list[str] | None = None,
    smoke: bool = False,
) -> RunResult:
    """Train ``config`` and write a complete run folder under ``runs_dir``.

    Args:
        config: a validated experiment; a missing seed is drawn and recorded.
        source: where the config came from, for error messages (e.g. its path).
        runs_dir: parent folder of run folders.
        console: where progress goes (default: stdout).
        overrides: the ``--set`` assignments already applied, recorded in run.json.
        smoke: a quick check: 1 epoch on at most SMOKE_ROWS rows of each split.

    Raises:
        ConfigError, DataError: refused before any run folder exists.
        TrainingError: training failed; the run folder says ``failed``.
        RunDirError: the run folder could not be written.
    """
    console = console or Console()
    started = time.perf_counter()
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    config = config.model_copy(update={"seed": seed})
    if smoke:
        config = config.model_copy(
            update={"training": config.training.model_copy(update={"epochs": 1})}
        )
    keras.backend.clear_session()  # a clean slate when one process trains several configs
    keras.utils.set_random_seed(seed)

    dataset = load_dataset(config.data, seed, config.task)
    if smoke:
        _shrink(dataset)
    check_inputs(dataset, config, source)
    model = build_model(
        config, dataset.x_train, source, normalize_inputs=bool(dataset.notes.get("normalize"))
    )
    outputs = int(model.output_shape[-1])
    check_labels(dataset, config, outputs)

    training = config.training
    batch_size = training.batch_size
    if batch_size > len(dataset.x_train):
        console.print(
            f"[yellow]note[/yellow]: training.batch_size {batch_size} is larger than the "
            f"{len(dataset.x_train)} training rows; using {len(dataset.x_train)}"
        )
        batch_size = len(dataset.x_train)
    compile_model(model, config, steps_per_epoch=math.ceil(len(dataset.x_train) / batch_size))
    labels = {
        name: _prepare_labels(y, config, outputs) for name, (_, y) in dataset.splits().items()
    }
    train_pipeline = make_pipeline(dataset.x_train, labels["train"], batch_size, True, seed)
    evaluation_pipelines = {
        name: make_pipeline(x, labels[name], batch_size, False, seed)
        for name, (x, _) in dataset.splits().items()
    }

    run = RunDir.create(runs_dir, config.name)
    write_yaml(run.file("config.yaml"), resolved_dict(config))
    params = int(model.count_params())
    run.update_run_json(
        status=STATUS_RUNNING,
        name=config.name,
        config_source=source,
        started_at=now_iso(),
        seed=seed,
        overrides=list(overrides or []),
        smoke=smoke,
        params=params,
        data=dataset.notes,
        # What predict/evaluate need to read new inputs like the training data:
        input_shape=list(config.model.input_shape),
        feature_names=dataset.feature_names,
        class_names=dataset.class_names,
        task=config.task,
        command=sys.argv,
        pid=os.getpid(),
        host=platform.node(),
        versions=versions(),
    )
    write_text(run.file("summary.txt"), model_summary(model))
    _announce(console, config, dataset, params, run)

    log = EpochLog(run, console, training.epochs)
    guard = StopOnNonFinite()
    callbacks = make_callbacks(config, run, log, guard)
    extra: dict[str, Any] = {}
    try:
        with graceful():  # Ctrl-C / SIGTERM end the epoch loop at a batch boundary
            model.fit(
                train_pipeline,
                validation_data=evaluation_pipelines.get("validation"),
                epochs=training.epochs,
                shuffle=False,  # the pipeline shuffles, seeded
                callbacks=callbacks,
                verbose=0,
            )
        raise_if_requested()
        if guard.failure:
            raise TrainingError(guard.failure)
        extra.update(early_stop_report(callbacks, console))
        metrics: dict[str, Any] = {
            name: loss_first(model.evaluate(data, verbose=0, return_dict=True))
            for name, data in evaluation_pipelines.items()
        }
        if dataset.x_test is not None and dataset.y_test is not None:
            tested = predict(
                model, dataset.x_test, dataset.y_test, config, dataset.class_names, batch_size
            )
            write_csv(run.file("predictions.csv"), *predictions_table(tested))
            if config.task != "regression":
                report = class_report(tested)
                metrics["test_classes"] = report
                matrix = report["confusion_matrix"]
                plots.confusion_matrix(
                    matrix["rows_true_columns_predicted"],
                    matrix["labels"],
                    run.file("plots/confusion_matrix.png"),
                )
        write_json(run.file("metrics.json"), metrics)
        save_model(model, run.file("model.keras"))
        if log.rows:
            plots.learning_curves(log.rows, run.file("plots/learning_curves.png"))
    except KeyboardInterrupt as interrupt:
        log.close()
        why = (
            "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted (Ctrl-C)"
        )
        _finish(run, STATUS_INTERRUPTED, started, len(log.rows), error=why)
        raise
    except BaseException as error:
        log.close()
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        _finish(run, STATUS_FAILED, started, len(log.rows), error=message)
        raise
    _finish(run, STATUS_COMPLETED, started, len(log.rows), **extra)
    return RunResult(
        path=run.path,
        status=STATUS_COMPLETED,
        metrics={k: v for k, v in metrics.items() if k in ("train", "validation", "test")},
        params=params,
        epochs_run=len(log.rows),
    )


SMOKE_ROWS = 256  # rows kept per split by --smoke: enough to exercise every code path


def _shrink(dataset: Dataset) -> None:
    """Keep the first SMOKE_ROWS rows of each split (the splits are already shuffled)."""
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            array = getattr(dataset, f"{part}_{split}")
            if array is not None:
                setattr(dataset, f"{part}_{split}", array[:SMOKE_ROWS])


def _announce(
    console: Console, config: ExperimentConfig, dataset: Dataset, params: int, run: RunDir
) -> None:
    sizes = [f"{len(x)} {name}" for name, (x, _) in dataset.splits().items()]
    console.print(
        f"[bold]{config.name}[/bold]: {', '.join(sizes)} examples; {params:,} parameters; "
        f"seed {config.seed}; run folder {run.path}",
        highlight=False,
    )
    skipped = dataset.notes.get("skipped")
    if skipped:
        examples = ", ".join(str(e) for e in skipped.get("examples", []))
        console.print(
            f"[yellow]note[/yellow]: skipped {skipped['count']} unreadable files ({examples})",
            highlight=False,
        )


def _finish(
    run: RunDir, status: str, started: float, epochs: int, error: str | None = None, **extra: Any
) -> None:
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": now_iso(),
        "duration_s": round(time.perf_counter() - started, 3),
        "epochs_completed": epochs,
        **extra,
    }
    if error:
        fields["error"] = error
    run.update_run_json(**fields)
