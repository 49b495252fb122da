"""Keras callbacks dltool adds to every fit: progress, history, NaN guard, best model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
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

from dltool.config import ExperimentConfig  # noqa: E402
from dltool.interrupts import stop_requested  # noqa: E402
from dltool.metrics import resolve_mode  # noqa: E402
from dltool.model import save_model  # noqa: E402
from dltool.rundir import BEST_MODEL, HISTORY, TENSORBOARD, RunDir, write_csv  # noqa: E402


def last_batch(callback: keras.callbacks.Callback, batch: int) -> int:
    """The number (from 1) of the last batch a call into TensorFlow ran.

    Keras reports a call of ``steps_per_execution`` k batches as ending at batch
    first + k - 1, also when the epoch had fewer batches left: 50 batches at 32 a
    call end "at batch 64".
    """
    steps = callback.params.get("steps") if callback.params else None
    return min(batch + 1, steps) if steps else batch + 1


class EpochLog(keras.callbacks.Callback):
    """Prints one line per epoch and keeps ``history.csv`` current after every epoch."""

    def __init__(
        self,
        run: RunDir,
        console: Console,
        epochs: int,
        rows: list[dict[str, Any]] | None = None,
        offset: int = 0,
    ) -> None:
        super().__init__()
        self.run, self.console, self.epochs = run, console, epochs
        self.rows: list[dict[str, Any]] = list(rows or [])  # earlier epochs, when resuming
        self.offset = offset  # epochs a parent run trained before rows[0] (dltool continue)
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
            self._bar.update(self._task, completed=last_batch(self, batch))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.close()

    @property
    def last_epoch(self) -> int:
        """The number of the last completed epoch (counting a parent run's)."""
        return self.offset + len(self.rows)

    def completed(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (from 0) was logged as completed."""
        return self.last_epoch == epoch + 1

    def rows_until(self, epoch: int) -> list[dict[str, Any]]:
        """This run's rows up to epoch ``epoch`` (from 1) included."""
        return self.rows[: max(0, epoch - self.offset)]

    def keep(self, epochs: int) -> None:
        """Forget the epochs after ``epochs`` (those the checkpoint lacks), in history.csv too."""
        if self.rows and self.last_epoch > epochs:
            header = list(self.rows[-1])
            self.rows = self.rows_until(epochs)
            write_csv(self.run.file(HISTORY), header, [list(r.values()) for r in self.rows])

    def close(self) -> None:
        """Stop the live bar (also called when fit raises, so the terminal is left clean)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # The one place that decides whether an epoch completed: the checkpoint follows
        # (see completed()), so a signal arriving while this row is written cannot leave
        # the epoch on screen and in history.csv but out of the checkpoint.
        if stop_requested():
            return  # Ctrl-C/SIGTERM cut this epoch short: it did not happen, as far as we record
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
        write_csv(self.run.file(HISTORY), list(row), [list(r.values()) for r in self.rows])
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
    """Stops at the first batch whose loss is NaN or infinite, and remembers where.

    With ``steps_per_execution`` k > 1 Keras runs k batches per call and reports
    only after the last, so the message names the range the call covered
    ("batches 33-64"): that is as exact as the logs allow. ``loss`` in the logs is
    the epoch's running mean, so it turns non-finite in the call where the first
    non-finite batch loss occurred.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.first_batch = 0  # the first batch of the current call into TensorFlow
        self.failure: str | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.first_batch = batch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            last = last_batch(self, batch)
            where = (
                f"batch {last}"
                if self.first_batch + 1 >= last
                else f"one of batches {self.first_batch + 1}-{last} (run in one call: "
                f"steps_per_execution {self.model.steps_per_execution})"
            )
            self.failure = (
                f"training: the loss became {float(loss)} in epoch {self.epoch + 1}, {where}; "
                "try a lower learning rate, normalized inputs or clipnorm"
            )
            self.model.stop_training = True


class StopOnSignal(keras.callbacks.Callback):
    """Ends training at the end of the current batch once Ctrl-C or SIGTERM arrived."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if stop_requested():
            self.model.stop_training = True


class Checkpointer(keras.callbacks.Callback):
    """Keeps the last completed epoch resumable.

    After every epoch the weights and optimizer state are copied in memory (cheap),
    and written to ``checkpoint/`` when ``interval_s`` seconds have passed since the
    last write (0 = every epoch); a run that finishes writes model.keras instead.
    When training stops early
    (Ctrl-C, SIGTERM, a NaN loss), :meth:`save_last_complete_epoch` restores that
    copy and writes it, so the checkpoint never holds a half-trained epoch or NaN
    weights. Files: ``checkpoint/epoch-NNNN.keras`` (model + optimizer) and
    the checkpoint pointer (which file, which epoch, the history so far), written
    in that order by :meth:`RunDir.write_checkpoint`, so the pointer only ever
    names a complete file.
    """

    def __init__(self, run: RunDir, fingerprint: str, log: EpochLog, interval_s: float) -> None:
        super().__init__()
        self.run, self.fingerprint, self.log, self.interval_s = run, fingerprint, log, interval_s
        self._snapshot: tuple[int, list[Any], list[Any]] | None = None
        self._saved_epoch = 0
        self._last_write = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.log.completed(epoch):
            return  # cut short by a signal (the log decided): keep the previous epoch's snapshot
        if self.model.stop_training and any(
            not math.isfinite(float(v)) for v in (logs or {}).values() if isinstance(v, int | float)
        ):
            return  # a NaN epoch is not worth keeping
        optimizer_state = [keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables]
        self._snapshot = (epoch + 1, self.model.get_weights(), optimizer_state)
        if time.perf_counter() - self._last_write >= self.interval_s:
            self._write()

    @property
    def saved_epoch(self) -> int:
        """The epoch the checkpoint on disk holds (0: none yet)."""
        return self._saved_epoch

    def save_last_complete_epoch(self) -> int:
        """Write the last completed epoch (restoring it into the model); returns its number."""
        if self._snapshot is None:
            return self._saved_epoch
        epoch, weights, optimizer_state = self._snapshot
        if epoch != self._saved_epoch:
            self.model.set_weights(weights)
            for variable, value in zip(
                self.model.optimizer.variables, optimizer_state, strict=True
            ):
                variable.assign(value)
            self._write()
        return epoch

    def _write(self) -> None:
        if self._snapshot is None:
            return
        epoch = self._snapshot[0]

        def save(target: Path) -> None:
            save_model(self.model, target)

        def pointed() -> None:  # with the pointer, signals deferred: both name the same epoch
            self._saved_epoch, self._last_write = epoch, time.perf_counter()

        self.run.write_checkpoint(
            save, epoch, self.fingerprint, self.log.rows_until(epoch), pointed
        )


class PruneCheck(keras.callbacks.Callback):
    """Asks ``check(epoch, logs)`` after each completed epoch (epochs from 1); True stops
    training there, and the run ends ``pruned`` with everything it trained so far."""

    def __init__(self, check: Callable[[int, dict[str, float]], bool], log: EpochLog) -> None:
        super().__init__()
        self.check, self.log = check, log
        self.pruned_after: int | None = None  # the last epoch trained, once pruned

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.log.completed(epoch) or self.model.stop_training:
            return  # cut short by a signal, or stopping anyway (NaN, early stopping)
        values = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        if self.check(epoch + 1, values):
            self.pruned_after = epoch + 1
            self.model.stop_training = True


class SaveBestModel(keras.callbacks.Callback):
    """Keeps the best epoch so far as ``best.keras``, written atomically.

    ``mode`` is ``min`` or ``max`` (``mode: auto`` is resolved by :func:`dltool.metrics.resolve_mode`).
    """

    def __init__(self, run: RunDir, monitor: str, mode: str) -> None:
        super().__init__()
        self.run, self.monitor = run, monitor
        self.sign = -1.0 if resolve_mode(monitor, mode) == "max" else 1.0
        self.best = math.inf
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self.sign * float(value) < self.best:
            self.best, self.best_epoch = self.sign * float(value), epoch + 1
            save_model(self.model, self.run.file(BEST_MODEL))


def make_callbacks(
    config: ExperimentConfig,
    run: RunDir,
    log: EpochLog,
    guard: StopOnNonFinite,
    saver: Checkpointer,
    prune: Callable[[int, dict[str, float]], bool] | None = None,
) -> list[Any]:
    """dltool's own callbacks, then those the config asks for (each spec builds its own);
    ``prune`` (a sweep's) is asked after each epoch whether to stop the run there."""
    training = config.training
    # Order matters: the log writes the epoch's row before the checkpoint copies it.
    callbacks: list[Any] = [StopOnSignal(), guard, log, saver]
    if prune is not None:
        callbacks.append(PruneCheck(prune, log))
    if training.early_stopping is not None:
        callbacks.append(training.early_stopping.callback(run))
    schedule = training.learning_rate_schedule
    if schedule is not None and (changer := schedule.callback()) is not None:
        callbacks.append(changer)
    if training.save_best is not None:
        callbacks.append(training.save_best.callback(run))
    if training.tensorboard:  # Keras' own callback: scalars per epoch, the graph, histograms off
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run.file(TENSORBOARD))))
    return callbacks


def pruned_after(callbacks: list[Any]) -> int | None:
    """The last epoch a pruned run trained, or None when it was not pruned."""
    return next((c.pruned_after for c in callbacks if isinstance(c, PruneCheck) and c.pruned_after), None)  # fmt: skip


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
