"""Keras callbacks dltool adds to every fit: progress, history, NaN guard, best model."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from dltool.backend import import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import keras``

import keras  # noqa: E402

from dltool.config import ExperimentConfig, ReduceOnPlateau  # noqa: E402
from dltool.interrupts import REQUEST  # noqa: E402
from dltool.model import save_model  # noqa: E402
from dltool.rundir import RunDir, write_csv  # noqa: E402


class EpochLog(keras.callbacks.Callback):
    """Prints one line per epoch and keeps ``history.csv`` current after every epoch."""

    def __init__(self, run: RunDir, console: Console, epochs: int) -> None:
        super().__init__()
        self.run, self.console, self.epochs = run, console, epochs
        self.rows: list[dict[str, Any]] = []
        self._started = 0.0
        # A live batch bar only on a terminal; logs and pipes get the epoch lines alone.
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()
        if self._bar is not None:
            steps = self.params.get("steps")
            self._task = self._bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=steps)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=batch + 1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live bar (also called when fit raises, so the terminal is left clean)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

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
        if self._bar is not None and self._task is not None:
            self._bar.remove_task(self._task)
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


class StopOnSignal(keras.callbacks.Callback):
    """Ends training at the end of the current batch once Ctrl-C or SIGTERM arrived."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if REQUEST.signum is not None:
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


def make_callbacks(
    config: ExperimentConfig, run: RunDir, log: EpochLog, guard: StopOnNonFinite
) -> list[Any]:
    training = config.training
    callbacks: list[Any] = [StopOnSignal(), guard, log]
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


def early_stop_report(callbacks: list[Any], console: Console) -> dict[str, Any]:
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
