"""Train one experiment and fill its run folder.

Order matters: everything that can refuse the experiment (data, labels, model
shapes) happens before the run folder is created, so a refused config leaves
nothing behind. From then on the folder always says where the run got to.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import secrets
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dltool import __version__
from dltool.backend import IMPORT_SECONDS, import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import keras``

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from dltool import plots  # noqa: E402
from dltool.callbacks import (  # noqa: E402
    Checkpointer,
    EpochLog,
    StopOnNonFinite,
    early_stop_report,
    make_callbacks,
)
from dltool.config import ExperimentConfig, resolved_dict  # noqa: E402
from dltool.data import Dataset, load_dataset  # noqa: E402
from dltool.errors import DataError, DltoolError, TrainingError  # noqa: E402
from dltool.evaluation import (  # noqa: E402
    class_report,
    loss_first,
    model_labels,
    predict,
    predictions_table,
)
from dltool.inputs import image_file_scale  # noqa: E402
from dltool.interrupts import (  # noqa: E402
    deferred_signals,
    raise_if_requested,
    stop_of,
)
from dltool.metrics import SPLITS  # noqa: E402
from dltool.model import build_model, compile_model, model_summary, save_model  # noqa: E402
from dltool.pipelines import make_pipeline, make_train_pipeline  # noqa: E402
from dltool.rundir import (  # noqa: E402
    CONFIG,
    CONFUSION_MATRIX,
    LEARNING_CURVES,
    METRICS,
    MODEL,
    PREDICTIONS,
    PROFILE,
    SKIPPED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    SUMMARY,
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
    seed = config.seed if config.seed is not None else 0
    keras.utils.set_random_seed(seed)
    clock = Clock()
    with clock.phase("data"):
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
    outputs = int(model.output_shape[-1])
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


def fingerprint(config: ExperimentConfig) -> str:
    """What a checkpoint must agree with to be resumed: model, loss, optimizer, schedule."""
    import hashlib
    import json

    training = config.training
    parts = {
        "model": config.model.model_dump(mode="json"),
        "loss": training.loss,
        "optimizer": training.optimizer.model_dump(mode="json"),
        "schedule": training.learning_rate_schedule.model_dump(mode="json")
        if training.learning_rate_schedule
        else None,
        "batch_size": training.batch_size,
        "data": config.data.model_dump(mode="json"),
        "seed": config.seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


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
    prepared = prepare(config, source, console, smoke)
    raise_if_requested()  # Ctrl-C while loading data: stop before any run folder exists
    model = prepared.model
    with prepared.clock.phase("build"):
        compile_model(
            model,
            config,
            steps_per_epoch=math.ceil(len(prepared.dataset.x_train) / prepared.batch_size),
        )

    run = RunDir.create(runs_dir, config.name)
    write_yaml(run.file(CONFIG), resolved_dict(config))
    params = int(model.count_params())
    dataset = prepared.dataset
    run.mark(
        STATUS_RUNNING,
        name=config.name,
        config_source=source,
        started_at=now_iso(),
        seed=seed,
        overrides=list(overrides or []),
        smoke=smoke,
        params=params,
        data=dataset.notes,
        examples={name: len(x) for name, (x, _) in dataset.splits().items()},
        # What predict/evaluate need to read new inputs like the training data:
        input_shape=list(config.model.input_shape),
        feature_names=dataset.feature_names,
        class_names=dataset.class_names,
        image_file_scale=image_file_scale(dataset, config.data.source),  # see dltool.inputs
        task=config.task,
        fingerprint=fingerprint(config),
        command=sys.argv,
        pid=os.getpid(),
        host=platform.node(),
        versions=versions(),
    )
    write_text(run.file(SUMMARY), model_summary(model))
    _announce(console, config, dataset, params, run)
    return _train_and_finish(run, prepared, console, started, first_epoch=0, history=[])


def resume_training(folder: Path, console: Console | None = None) -> RunResult:
    """Continue an interrupted or crashed run from its last checkpoint, in the same folder.

    Raises:
        InputError: the folder is missing, completed, still running, has no
            checkpoint, or its model/optimizer config changed since the checkpoint.
    """
    from dltool.errors import InputError
    from dltool.model import load_trained_model

    console = console or Console()
    started = time.perf_counter()
    run = RunDir.open(folder)
    info, latest = run.require_resumable()
    config = run.config()
    if fingerprint(config) != latest["fingerprint"]:
        raise InputError(
            f"{folder}: {CONFIG}'s model, data or optimizer changed since the checkpoint "
            "(received a different configuration; expected the one the run was trained with)"
        )
    keras.backend.clear_session()
    model = load_trained_model(latest["path"])
    prepared = prepare(
        config, str(run.path / CONFIG), console, bool(info.get("smoke")), model=model
    )
    epoch = int(latest["epoch"])
    resumed = [*info.get("resumed", []), {"at": now_iso(), "from_epoch": epoch}]
    run.mark(STATUS_RUNNING, pid=os.getpid(), host=platform.node(), resumed=resumed, error=None)
    console.print(
        f"[bold]{config.name}[/bold]: resuming {folder} after epoch {epoch} of {config.training.epochs}",
        highlight=False,
    )
    previous = float(info.get("duration_s") or 0.0)
    return _train_and_finish(
        run,
        prepared,
        console,
        started - previous,
        first_epoch=epoch,
        history=list(latest["history"]),
    )


def _train_and_finish(
    run: RunDir,
    prepared: Prepared,
    console: Console,
    started: float,
    first_epoch: int,
    history: list[dict[str, Any]],
) -> RunResult:
    """Fit from ``first_epoch``, then evaluate and write every output; keeps run.json's status true."""
    config, dataset, model, batch_size = (
        prepared.config,
        prepared.dataset,
        prepared.model,
        prepared.batch_size,
    )
    training = config.training
    seed = config.seed if config.seed is not None else 0
    evaluation_pipelines = {
        name: make_pipeline(x, prepared.labels[name], batch_size)
        for name, (x, _) in dataset.splits().items()
    }
    log = EpochLog(run, console, training.epochs, rows=history)
    guard = StopOnNonFinite()
    saver = Checkpointer(run, fingerprint(config), log, training.checkpoint_seconds)
    callbacks = make_callbacks(config, run, log, guard, saver)
    extra: dict[str, Any] = {}
    try:
        # A signal only sets a flag until the run reaches a safe point (see interrupts.py).
        if first_epoch < training.epochs:
            train_pipeline = make_train_pipeline(
                dataset.x_train,
                prepared.labels["train"],
                batch_size,
                seed,
                first_epoch,
                training.epochs,
            )
            with prepared.clock.phase("fit"):
                model.fit(
                    train_pipeline,
                    validation_data=evaluation_pipelines.get("validation"),
                    initial_epoch=first_epoch,
                    epochs=training.epochs,
                    steps_per_epoch=math.ceil(len(dataset.x_train) / batch_size),
                    shuffle=False,  # the pipeline shuffles, seeded per epoch
                    callbacks=callbacks,
                    verbose=0,
                )
        if guard.failure:
            saver.save_last_complete_epoch()  # the last finite weights, for inspection or resume
            raise TrainingError(guard.failure)
        raise_if_requested()
        extra.update(early_stop_report(callbacks, console))
        metrics = _write_outputs(run, prepared, evaluation_pipelines, log)
    except KeyboardInterrupt as interrupt:
        with deferred_signals():
            log.close()  # the live bar, if any, before the lines below
        try:
            saved = saver.save_last_complete_epoch()
        except (KeyboardInterrupt, DltoolError):  # another Ctrl-C, or a full disk, mid-write
            saved = saver.saved_epoch  # the previous checkpoint is intact (atomic writes)
        # From here on yet another Ctrl-C waits: run.json must say interrupted, and the CLI
        # must get the resume line, whatever arrives now.
        with deferred_signals():
            stop = stop_of(interrupt)
            why = f"{stop.word} ({stop.label})"
            _finish(run, STATUS_INTERRUPTED, started, len(log.rows), error=why)
            where = (
                f"after epoch {saved}; resume with: dltool train --resume "
                f"{shlex.quote(str(run.path))}"
                if saved
                else "before the first epoch ended; nothing to resume"
            )
            interrupt.args = (f"{stop.word} {where}",)  # the CLI prints this one line
        raise
    except BaseException as error:
        log.close()
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        _finish(run, STATUS_FAILED, started, len(log.rows), error=message)
        raise
    timings = {**prepared.clock.seconds, "run_total": round(time.perf_counter() - started, 3)}
    if config.training.profile:
        write_json(
            run.file(PROFILE),
            {
                "seconds": timings,
                "epochs": len(log.rows),
                "steps_per_execution": model.steps_per_execution
                if hasattr(model, "steps_per_execution")
                else None,
            },
        )
        console.print(
            "profile (seconds): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()),
            highlight=False,
        )
    _finish(run, STATUS_COMPLETED, started, len(log.rows), timings=timings, **extra)
    run.remove_checkpoint()
    return RunResult(
        path=run.path,
        status=STATUS_COMPLETED,
        metrics={k: v for k, v in metrics.items() if k in SPLITS},
        params=int(model.count_params()),
        epochs_run=len(log.rows),
    )


def _write_outputs(run: RunDir, prepared: Prepared, evaluation_pipelines: dict[str, Any], log: EpochLog) -> dict[str, Any]:  # fmt: skip
    """metrics.json, predictions.csv, the confusion matrix, model.keras and the learning curves."""
    config, dataset, model, clock = (
        prepared.config,
        prepared.dataset,
        prepared.model,
        prepared.clock,
    )
    report = None
    with clock.phase("evaluate"):
        metrics: dict[str, Any] = {
            name: loss_first(model.evaluate(data, verbose=0, return_dict=True))
            for name, data in evaluation_pipelines.items()
        }
        if dataset.x_test is not None and dataset.y_test is not None:
            tested = predict(
                model,
                dataset.x_test,
                dataset.y_test,
                config,
                dataset.class_names,
                prepared.batch_size,
            )
            if config.task != "regression":
                report = class_report(tested)
                metrics["test_classes"] = report
    raise_if_requested()  # a signal during evaluation stops the run before anything is written
    with clock.phase("save"):
        if dataset.x_test is not None and dataset.y_test is not None:
            write_csv(run.file(PREDICTIONS), *predictions_table(tested))
        if report is not None:
            matrix = report["confusion_matrix"]
            plots.confusion_matrix(
                matrix["rows_true_columns_predicted"],
                matrix["labels"],
                run.file(CONFUSION_MATRIX),
            )
        write_json(run.file(METRICS), metrics)
        save_model(model, run.file(MODEL))
        if log.rows:
            plots.learning_curves(log.rows, run.file(LEARNING_CURVES))
    return metrics


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
    if dataset.skipped:
        write_text(run.file(SKIPPED), "".join(f"{line}\n" for line in dataset.skipped))
        examples = ", ".join(str(e) for e in dataset.notes["skipped"]["examples"])
        console.print(
            f"[yellow]note[/yellow]: skipped {len(dataset.skipped)} unreadable files "
            f"({examples}); every one, with the reason: {run.file(SKIPPED)}",
            highlight=False,
        )


def _finish(
    run: RunDir, status: str, started: float, epochs: int, error: str | None = None, **extra: Any
) -> None:
    run.mark(
        status,
        finished_at=now_iso(),
        duration_s=round(time.perf_counter() - started, 3),
        epochs_completed=epochs,
        **extra,
        **({"error": error} if error else {}),
    )
