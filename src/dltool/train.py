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

from dltool.config import ExperimentConfig, ReduceOnPlateau, resolved_dict  # noqa: E402
from dltool.data import Dataset, load_dataset  # noqa: E402
from dltool.errors import DataError, TrainingError  # noqa: E402
from dltool.model import build_model, compile_model  # noqa: E402
from dltool.plots import learning_curves  # noqa: E402
from dltool.rundir import (  # noqa: E402
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    RunDir,
    atomic_path,
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


def _task(config: ExperimentConfig) -> str:
    loss = config.training.loss
    if loss == "binary_crossentropy":
        return "binary"
    if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        return "multiclass"
    return "regression"


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
    task = _task(config)
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
    task = _task(config)
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


# ------------------------------------------------------------------- callbacks


class EpochLog(keras.callbacks.Callback):
    """Prints one line per epoch and keeps ``history.csv`` current after every epoch."""

    def __init__(self, run: RunDir, console: Console, epochs: int) -> None:
        super().__init__()
        self.run, self.console, self.epochs = run, console, epochs
        self.rows: list[dict[str, Any]] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        # loss first, then metrics, then their validation twins: the order people read them
        ordered = sorted(
            logs, key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss")
        )
        row: dict[str, Any] = {"epoch": epoch + 1, **{k: logs[k] for k in ordered}}
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["duration_s"] = round(time.perf_counter() - self._started, 4)
        self.rows.append(row)
        write_csv(self.run.file("history.csv"), list(row), [list(r.values()) for r in self.rows])
        shown = "  ".join(
            f"{k} [bold]{v:.4f}[/bold]"
            for k, v in row.items()
            if k not in ("epoch", "duration_s", "learning_rate")
        )
        width = len(str(self.epochs))
        self.console.print(
            f"epoch {epoch + 1:>{width}}/{self.epochs}  {shown}  [dim]{row['duration_s']:.1f}s[/dim]",
            highlight=False,
        )


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops at the first batch whose loss is NaN or infinite, and remembers where."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.failure: str | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = (
                f"training: the loss became {float(loss)} in epoch {self.epoch + 1}, "
                f"batch {batch + 1}; try a lower learning rate, normalized inputs or clipnorm"
            )
            self.model.stop_training = True


class SaveBestModel(keras.callbacks.Callback):
    """Keeps the best epoch so far as ``best.keras``, written atomically."""

    def __init__(self, run: RunDir, monitor: str, mode: str) -> None:
        super().__init__()
        self.run, self.monitor = run, monitor
        maximize = mode == "max" or (mode == "auto" and _higher_is_better(monitor))
        self.sign = -1.0 if maximize else 1.0
        self.best = math.inf
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self.sign * float(value) < self.best:
            self.best, self.best_epoch = self.sign * float(value), epoch + 1
            save_model(self.model, self.run.file("best.keras"))


def _higher_is_better(monitor: str) -> bool:
    name = monitor.removeprefix("val_")
    return name in ("accuracy", "auc", "precision", "recall")


def save_model(model: keras.Model, target: Path) -> None:
    """``model.save`` opens its target directly; a failed save must not destroy the old file."""
    with atomic_path(target, suffix=".keras") as temporary:
        model.save(temporary)


def _callbacks(
    config: ExperimentConfig, run: RunDir, log: EpochLog, guard: StopOnNonFinite
) -> list[Any]:
    training = config.training
    callbacks: list[Any] = [guard, log]
    if training.early_stopping is not None:
        stop = training.early_stopping
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stop.monitor,
                patience=stop.patience,
                min_delta=stop.min_delta,
                mode=stop.mode,
                restore_best_weights=stop.restore_best_weights,
                start_from_epoch=stop.start_from_epoch,
            )
        )
    schedule = training.learning_rate_schedule
    if isinstance(schedule, ReduceOnPlateau):
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=schedule.monitor,
                factor=schedule.factor,
                patience=schedule.patience,
                min_delta=schedule.min_delta,
                min_lr=schedule.min_learning_rate,
            )
        )
    if training.save_best is not None:
        callbacks.append(SaveBestModel(run, training.save_best.monitor, training.save_best.mode))
    return callbacks


# ----------------------------------------------------------------- run outputs


def _predictions(
    model: keras.Model, dataset: Dataset, config: ExperimentConfig, batch_size: int
) -> tuple[list[str], list[list[Any]]]:
    """``predictions.csv``'s header and rows for the test split."""
    if dataset.x_test is None or dataset.y_test is None:
        return ["index"], []
    raw = model.predict(
        np.asarray(dataset.x_test, dtype="float32"), batch_size=batch_size, verbose=0
    )
    y_true = np.asarray(dataset.y_test).reshape(len(dataset.y_test), -1)
    task = _task(config)
    if task == "regression":
        header = ["index", "true", "predicted", "error"]
        return header, [
            [i, *(_round(t) for t in (y_true[i, 0], raw[i, 0], raw[i, 0] - y_true[i, 0]))]
            for i in range(len(raw))
        ]
    if task == "binary":
        probabilities = np.column_stack([1.0 - raw[:, 0], raw[:, 0]])
        true_index = y_true[:, 0].astype(int)
    else:
        probabilities = raw
        true_index = y_true.argmax(axis=1) if y_true.shape[1] > 1 else y_true[:, 0].astype(int)
    predicted = probabilities.argmax(axis=1)
    names = dataset.class_names or [str(i) for i in range(probabilities.shape[1])]
    header = ["index", "true", "predicted", "correct", *(f"prob_{name}" for name in names)]
    rows = [
        [i, names[true_index[i]], names[predicted[i]], bool(true_index[i] == predicted[i]),
         *(_round(p) for p in probabilities[i])]
        for i in range(len(raw))
    ]  # fmt: skip
    return header, rows


def _loss_first(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(values[k]) for k in sorted(values, key=lambda k: k != "loss")}


def _round(value: Any) -> float:
    return round(float(value), 6)


def _model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda text, line_break=False: lines.append(text))
    return "\n".join(lines).rstrip() + "\n"


def versions() -> dict[str, str]:
    return {
        "dltool": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------- train


def run_training(
    config: ExperimentConfig,
    *,
    source: str,
    runs_dir: Path,
    console: Console | None = None,
) -> RunResult:
    """Train ``config`` and write a complete run folder under ``runs_dir``.

    Args:
        config: a validated experiment; a missing seed is drawn and recorded.
        source: where the config came from, for error messages (e.g. its path).
        runs_dir: parent folder of run folders.
        console: where progress goes (default: stdout).

    Raises:
        ConfigError, DataError: refused before any run folder exists.
        TrainingError: training failed; the run folder says ``failed``.
        RunDirError: the run folder could not be written.
    """
    console = console or Console()
    started = time.perf_counter()
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    config = config.model_copy(update={"seed": seed})
    keras.utils.set_random_seed(seed)

    dataset = load_dataset(config.data, seed, _task(config))
    check_inputs(dataset, config, source)
    model = build_model(config, dataset.x_train, source)
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
    steps_per_epoch = math.ceil(len(dataset.x_train) / batch_size)
    compile_model(model, config, steps_per_epoch)
    pipelines = {
        name: make_pipeline(
            x, _prepare_labels(y, config, outputs), batch_size, name == "train", seed
        )
        for name, (x, y) in dataset.splits().items()
    }
    evaluation_pipelines = {
        name: make_pipeline(x, _prepare_labels(y, config, outputs), batch_size, False, seed)
        for name, (x, y) in dataset.splits().items()
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
        params=params,
        command=sys.argv,
        pid=os.getpid(),
        versions=versions(),
    )
    write_text(run.file("summary.txt"), _model_summary(model))
    console.print(
        f"[bold]{config.name}[/bold]: {len(dataset.x_train)} training rows"
        + (f", {len(dataset.x_val)} validation" if dataset.x_val is not None else "")
        + (f", {len(dataset.x_test)} test" if dataset.x_test is not None else "")
        + f"; {params:,} parameters; seed {seed}; run folder {run.path}",
        highlight=False,
    )

    log = EpochLog(run, console, training.epochs)
    guard = StopOnNonFinite()
    callbacks = _callbacks(config, run, log, guard)
    extra: dict[str, Any] = {}
    try:
        model.fit(
            pipelines["train"],
            validation_data=pipelines.get("validation"),
            epochs=training.epochs,
            shuffle=False,  # the pipeline shuffles, seeded
            callbacks=callbacks,
            verbose=0,
        )
        if guard.failure:
            raise TrainingError(guard.failure)
        extra.update(_early_stop_report(callbacks, console))
        metrics = {
            name: _loss_first(model.evaluate(data, verbose=0, return_dict=True))
            for name, data in evaluation_pipelines.items()
        }
        write_json(run.file("metrics.json"), metrics)
        if dataset.x_test is not None:
            header, rows = _predictions(model, dataset, config, batch_size)
            write_csv(run.file("predictions.csv"), header, rows)
        save_model(model, run.file("model.keras"))
        if log.rows:
            learning_curves(log.rows, run.file("plots/learning_curves.png"))
    except KeyboardInterrupt:
        _finish(run, STATUS_INTERRUPTED, started, len(log.rows), error="interrupted by the user")
        raise
    except BaseException as error:
        _finish(
            run,
            STATUS_FAILED,
            started,
            len(log.rows),
            error=str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
        raise
    _finish(run, STATUS_COMPLETED, started, len(log.rows), **extra)
    return RunResult(
        path=run.path,
        status=STATUS_COMPLETED,
        metrics=metrics,
        params=params,
        epochs_run=len(log.rows),
    )


def _early_stop_report(callbacks: list[Any], console: Console) -> dict[str, Any]:
    """Say whether early stopping ended the run, and which epoch's weights were kept."""
    stopper = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
    if stopper is None or stopper.stopped_epoch == 0:
        return {}
    kept = stopper.best_epoch + 1 if stopper.restore_best_weights else stopper.stopped_epoch + 1
    console.print(
        f"early stopping: no improvement in {stopper.monitor} for {stopper.patience} epochs; "
        f"stopped after epoch {stopper.stopped_epoch + 1}, kept the weights of epoch {kept}",
        highlight=False,
    )
    return {"stopped_early": True, "weights_from_epoch": kept}


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
