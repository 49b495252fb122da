"""Train one experiment and fill its run folder.

Order matters: everything that can refuse the experiment (data, labels, model
shapes) happens before the run folder is created, so a refused config leaves
nothing behind (that part is :mod:`dltool.prepare`). From then on the folder
always says where the run got to.

Longer than 400 lines because it is the one writer of a run folder through its whole life:
create, train, checkpoint, interrupt, resume and finish.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from dltool import __version__
from dltool.backend import import_keras

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
    pruned_after,
)
from dltool.config import ExperimentConfig, defaulted_keys, resolved_dict  # noqa: E402
from dltool.data import Dataset  # noqa: E402
from dltool.data.images import MAX_SKIPPED_EXAMPLES  # noqa: E402
from dltool.data.rows import Rows, failures, image_readers, usable  # noqa: E402
from dltool.distribute import distribution  # noqa: E402
from dltool.errors import DltoolError, TrainingError  # noqa: E402
from dltool.evaluation import (  # noqa: E402
    Predictions,
    StreamingScores,
    class_report,
    mistakes_of,
    predict,
    predictions_table,
)
from dltool.fingerprint import check_splits, fingerprint_dataset, sha256_file  # noqa: E402
from dltool.inputs import image_file_scale  # noqa: E402
from dltool.interrupts import (  # noqa: E402
    deferred_signals,
    raise_if_requested,
    stop_of,
)
from dltool.metrics import SPLITS  # noqa: E402
from dltool.model import (  # noqa: E402
    build_training_state,
    compile_model,
    layer_rows,
    model_summary,
    restore_seed_states,
    save_model,
    seed_states,
)
from dltool.pipelines import TrainPipeline, make_pipeline, steps_per_epoch  # noqa: E402
from dltool.prepare import Prepared, prepare  # noqa: E402
from dltool.rundir import (  # noqa: E402
    CONFIG,
    CONFUSION_MATRIX,
    DATA_FILES,
    LEARNING_CURVES,
    METRICS,
    MISTAKES,
    MODEL,
    PREDICTIONS,
    PROFILE,
    RUN_JSON,
    SKIPPED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_PRUNED,
    STATUS_RUNNING,
    SUMMARY,
    RunDir,
    now_iso,
    write_csv,
    write_json,
    write_npz,
    write_text,
    write_yaml,
)
from dltool.views import printable  # noqa: E402


@dataclass
class RunResult:
    """What a finished run produced."""

    path: Path
    status: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    params: int = 0
    epochs_run: int = 0


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
    prune: Callable[[int, dict[str, float]], bool] | None = None,
    expected_data: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``config`` and write a complete run folder under ``runs_dir``.

    Args:
        config: a validated experiment; a missing seed is drawn and recorded.
        source: where the config came from, for error messages (e.g. its path).
        runs_dir: parent folder of run folders.
        console: where progress goes (default: stdout).
        overrides: the ``--set`` assignments already applied, recorded in run.json.
        smoke: a quick check: 1 epoch on at most SMOKE_ROWS rows of each split.
        prune: a sweep's check after each epoch (epoch from 1, Keras' logs); True stops
            the run there, complete for what it trained, with status ``pruned``.
        expected_data: a run's recorded ``data_fingerprint`` (``dltool reproduce``): data
            whose splits differ from it is refused before any run folder exists.
        lineage: run.json fields that relate the run to another (``reproduces``).

    Raises:
        ConfigError, DataError: refused before any run folder exists.
        TrainingError: training failed; the run folder says ``failed``.
        RunDirError: the run folder could not be written.
    """
    console = console or Console()
    started = time.perf_counter()
    defaults = defaulted_keys(config)  # before the seed is drawn: a drawn seed is a default
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    config = config.model_copy(update={"seed": seed})
    if smoke:
        config = config.model_copy(
            update={"training": config.training.model_copy(update={"epochs": 1})}
        )
    keras.backend.clear_session()  # a clean slate when one process trains several configs
    # under training.distribute's strategy: the model, its optimizer and the fit
    with distribution(config.training.distribute, config.training.backend) as placement:
        with placement.building():
            prepared = prepare(config, source, console, smoke)
            raise_if_requested()  # Ctrl-C while loading data: stop before any run folder exists
            model = prepared.model
            with prepared.clock.phase("build"):
                compile_model(model, config, steps_per_epoch=steps_per_epoch(len(prepared.dataset.x_train), prepared.batch_size))  # fmt: skip

        return _start_run(
            prepared,
            source=source,
            runs_dir=runs_dir,
            console=console,
            started=started,
            overrides=overrides,
            smoke=smoke,
            defaults=defaults,
            prune=prune,
            expected_data=expected_data,
            lineage=lineage,
            devices=placement.devices,
        )


def _start_run(
    prepared: Prepared,
    *,
    source: str,
    runs_dir: Path,
    console: Console,
    started: float,
    overrides: list[str] | None,
    smoke: bool,
    defaults: list[str],
    prune: Callable[[int, dict[str, float]], bool] | None = None,
    expected_data: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    first_epoch: int = 0,
    devices: list[str] | None = None,
) -> RunResult:
    """Fingerprint the data, create the run folder, record the run and train from ``first_epoch``.

    Raises:
        DataError: the data differs from ``expected_data`` (nothing is written).
    """
    config, model, dataset = prepared.config, prepared.model, prepared.dataset
    with prepared.clock.phase("fingerprint"):
        data_print = fingerprint_dataset(dataset, config.data)
    if expected_data is not None:
        check_splits(expected_data, data_print, source)
    run = RunDir.create(runs_dir, config.name)
    with run.writing():  # held until the run ends: a second writer is refused
        write_yaml(run.file(CONFIG), resolved_dict(config))
        if data_print.files:
            write_json(run.file(DATA_FILES), data_print.files)
        params = int(model.count_params())
        run.mark(
            STATUS_RUNNING,
            name=config.name,
            config_source=source,
            started_at=now_iso(),
            seed=config.seed,
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
            layers=layer_rows(model),
            config_defaults=defaults,
            fingerprint=fingerprint(config),
            data_fingerprint=data_print.record(),
            **(lineage or {}),
            command=sys.argv,
            pid=os.getpid(),
            host=platform.node(),
            distribute=config.training.distribute,
            devices=devices,
            versions=versions(),
        )
        write_text(run.file(SUMMARY), model_summary(model))
        _announce(console, config, dataset, params, run)
        return _train_and_finish(
            run,
            prepared,
            console,
            started,
            first_epoch=first_epoch,
            history=[],
            prune=prune,
            offset=first_epoch,
        )


def resume_training(folder: Path, console: Console | None = None) -> RunResult:
    """Continue an interrupted or crashed run from its last checkpoint, in the same folder.

    Raises:
        InputError: the folder is missing, completed, still running, has no
            checkpoint, or its model/optimizer config changed since the checkpoint.
        DataError: a data file it trained on is missing or changed (named).
    """
    from dltool.errors import InputError
    from dltool.fingerprint import check_run_data
    from dltool.model import load_trained_model

    console = console or Console()
    started = time.perf_counter()
    run = RunDir.open(folder)
    with run.writing():  # before anything is read: a second --resume is refused at once
        info, latest = run.require_resumable()
        config = run.config()
        if fingerprint(config) != latest["fingerprint"]:
            raise InputError(
                f"{folder}: {CONFIG}'s model, data or optimizer changed since the checkpoint "
                "(received a different configuration; expected the one the run was trained with)"
            )
        recorded_data = check_run_data(run)  # a data file changed since the run started: refuse
        keras.backend.clear_session()
        with distribution(config.training.distribute, config.training.backend) as placement:
            with placement.building():  # the checkpoint's weights and optimizer, mirrored
                model = load_trained_model(latest["path"])
                prepared = prepare(config, str(run.path / CONFIG), console, bool(info.get("smoke")), model=model)  # fmt: skip
            if recorded_data is not None:
                with prepared.clock.phase("fingerprint"):
                    now = fingerprint_dataset(prepared.dataset, config.data)
                check_splits(recorded_data, now, str(run.path / CONFIG))
            epoch = int(latest["epoch"])
            resumed = [*info.get("resumed", []), {"at": now_iso(), "from_epoch": epoch}]
            run.mark(STATUS_RUNNING, pid=os.getpid(), host=platform.node(), resumed=resumed, devices=placement.devices, error=None)  # fmt: skip
            console.print(
                f"[bold]{config.name}[/bold]: resuming {folder} after epoch {epoch} of {config.training.epochs}",
                highlight=False,
            )
            recorded = info.get("duration_s")  # run.json may have been edited: never trust its type
            previous = (
                float(recorded) if isinstance(recorded, int | float) and recorded >= 0 else 0.0
            )
            offset = info.get("continued_from_epoch")  # a continued run's history starts there
            return _train_and_finish(
                run,
                prepared,
                console,
                started - previous,
                first_epoch=epoch,
                history=list(latest["history"]),
                offset=offset if isinstance(offset, int) and 0 <= offset <= epoch else 0,
            )


def continue_training(
    folder: Path,
    epochs: int,
    runs_dir: Path,
    console: Console | None = None,
    lineage: dict[str, Any] | None = None,
) -> RunResult:
    """Train a completed run ``epochs`` more epochs, from its model and optimizer state, as a
    new run under ``runs_dir`` whose run.json names its parent.

    Epoch numbers carry on (the new history.csv starts at the parent's last epoch + 1), each
    epoch sees the batches an uninterrupted run would have seen, and a learning-rate
    schedule continues from the optimizer's step count rather than restarting.
    ``lineage``: more run.json fields (``reproduces``, when reproducing a continued run).

    Raises:
        InputError: the folder is not a completed run.
        DataError: its data files are missing or changed (named), before anything is written.
    """
    from dltool.errors import InputError
    from dltool.fingerprint import check_run_data, model_changed
    from dltool.model import load_trained_model

    console = console or Console()
    started = time.perf_counter()
    parent = RunDir.open(folder)
    info = parent.require_completed()
    config = parent.config()
    done = info.get("epochs_completed")
    if not isinstance(done, int) or isinstance(done, bool) or done < 1:
        raise InputError(f"{folder / RUN_JSON}: epochs_completed is {done!r} (expected a number of epochs >= 1)")  # fmt: skip
    changed = model_changed(parent.path / MODEL, info)
    if changed:
        raise InputError(f"{changed}; refusing to continue from a model that is not the one trained")  # fmt: skip
    recorded = check_run_data(parent)
    training = config.training.model_copy(update={"epochs": done + epochs})
    config = config.model_copy(update={"training": training})
    source = str(parent.path / CONFIG)
    keras.backend.clear_session()
    with distribution(config.training.distribute, config.training.backend) as placement:
        with placement.building():  # the parent's weights and optimizer, mirrored
            model = load_trained_model(parent.path / MODEL)  # compiled: the optimizer's state too
            restore_seed_states(model, info.get("seed_generator_states"))  # dropout masks carry on
            prepared = prepare(config, source, console, bool(info.get("smoke")), model=model)
        raise_if_requested()
        console.print(
            f"[bold]{config.name}[/bold]: continuing {escape(str(folder))} after epoch {done}, "
            f"to epoch {done + epochs}",
            highlight=False,
        )
        return _start_run(
            prepared,
            source=source,
            runs_dir=runs_dir,
            console=console,
            started=started,
            overrides=[],
            smoke=bool(info.get("smoke")),
            defaults=[k for k in info.get("config_defaults") or [] if isinstance(k, str)],
            expected_data=recorded,
            lineage={
                "parent": str(folder.resolve()),
                "continued_from_epoch": done,
                **(lineage or {}),
            },
            first_epoch=done,
            devices=placement.devices,
        )


def _train_and_finish(
    run: RunDir,
    prepared: Prepared,
    console: Console,
    started: float,
    first_epoch: int,
    history: list[dict[str, Any]],
    prune: Callable[[int, dict[str, float]], bool] | None = None,
    offset: int = 0,
) -> RunResult:
    """Fit from ``first_epoch``, then evaluate and write every output; keeps run.json's status true.

    ``offset``: the epochs a parent run trained before this run's first (``dltool continue``);
    this run's history.csv starts at epoch ``offset + 1``.
    """
    config, dataset, model, batch_size = (
        prepared.config,
        prepared.dataset,
        prepared.model,
        prepared.batch_size,
    )
    training = config.training
    seed = config.seed if config.seed is not None else 0
    log = EpochLog(run, console, training.epochs, rows=history, offset=offset)
    guard = StopOnNonFinite()
    saver = Checkpointer(run, fingerprint(config), log, training.checkpoint_seconds)
    callbacks = make_callbacks(config, run, log, guard, saver, prune)
    recorder = None
    if training.record_internals:  # last: it reads the weights early stopping restored
        from dltool.internals import PROBE_ROWS, RecordInternals, in_the_step

        first = np.arange(min(PROBE_ROWS, len(dataset.x_train)))
        probe = None if in_the_step() else _examples(dataset.x_train, first)  # decoded if streamed
        test = dataset.x_test
        picture = _examples(test, np.arange(1))[0] if test is not None and len(test) else None
        recorder = RecordInternals(run, probe, picture)
        callbacks.append(recorder)
    extra: dict[str, Any] = {}
    try:
        with _memory_refused(log, batch_size, saver):
            evaluated = _evaluated_rows(dataset, prepared.labels, seed)
            validation = evaluated.get("validation")  # every row, each epoch
            validation_data = make_pipeline(validation[0], validation[1], batch_size) if validation else None  # fmt: skip
            # A signal only sets a flag until the run reaches a safe point (see interrupts.py).
            if first_epoch < training.epochs:
                train_pipeline = TrainPipeline(
                    dataset.x_train, prepared.labels["train"], batch_size, seed, first_epoch
                )
                with prepared.clock.phase("fit"):
                    build_training_state(model, dataset.x_train, prepared.labels["train"])
                    try:
                        model.fit(
                            train_pipeline.dataset,  # one epoch per pass: no steps_per_epoch (see there)
                            validation_data=validation_data,
                            initial_epoch=first_epoch,
                            epochs=training.epochs,
                            shuffle=False,  # the pipeline shuffles, seeded per epoch
                            callbacks=[train_pipeline.callback(), *callbacks],
                            verbose=0,
                        )
                    finally:
                        if recorder is not None:  # an interrupted fit skips on_train_end
                            recorder.detach()
            if guard.failure:
                saver.save_last_complete_epoch()  # the last finite weights, for inspection or resume
                raise TrainingError(guard.failure)
            raise_if_requested()
            extra.update(early_stop_report(callbacks, console))
            pruned = pruned_after(callbacks)
            if pruned is not None:
                extra["pruned_after_epoch"] = pruned
                console.print(f"pruned after epoch {pruned}: the sweep judged the trial hopeless", highlight=False)  # fmt: skip
            metrics = _write_outputs(run, prepared, log, evaluated, extra.get("weights_from_epoch"))
            extra.update(_late_skips(run, dataset, console))
            extra["model_sha256"] = sha256_file(run.file(MODEL))  # predict and export check it
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
            # history.csv and run.json say what the checkpoint holds; on a full disk resume
            # rewrites history.csv from the checkpoint's own copy anyway.
            with contextlib.suppress(DltoolError):
                log.keep(saved)
            stop = stop_of(interrupt)
            why = f"{stop.word} ({stop.label})"
            _finish(run, STATUS_INTERRUPTED, started, log.last_epoch, error=why)
            _write_report(run, console)
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
        _finish(run, STATUS_FAILED, started, log.last_epoch, error=message)
        _write_report(run, console)
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
    status = STATUS_PRUNED if "pruned_after_epoch" in extra else STATUS_COMPLETED
    extra["seed_generator_states"] = seed_states(model)  # for dltool continue (see there)
    _finish(run, status, started, log.last_epoch, timings=timings, **extra)
    _write_report(run, console)
    run.remove_checkpoint()
    return RunResult(
        path=run.path,
        status=status,
        metrics={k: v for k, v in metrics.items() if k in SPLITS},
        params=int(model.count_params()),
        epochs_run=len(log.rows),
    )


@contextlib.contextmanager
def _memory_refused(log: EpochLog, batch_size: int, saver: Checkpointer) -> Iterator[None]:
    """Running out of memory while training or evaluating is the size of the data, batch or
    model, not a bug in dltool: one line and exit 3 (the run is marked failed), not "internal
    error". Python's MemoryError, or TensorFlow's ResourceExhaustedError when it says out of
    memory ("OOM when allocating tensor with shape[...]"; it says ResourceExhausted for a full
    disk or too many open files too, which stay what they are). The last completed epoch is
    saved to checkpoint/ first, as after a non-finite loss, where memory allows."""
    try:
        yield
    except (MemoryError, tf.errors.ResourceExhaustedError) as error:
        said = str(error)
        if not isinstance(error, MemoryError) and not re.search(r"\bOOM\b|out of memory|MemoryError", said, re.IGNORECASE):  # fmt: skip
            raise
        with contextlib.suppress(MemoryError, DltoolError, tf.errors.OpError):
            saver.save_last_complete_epoch()
        shape = re.search(r"OOM when allocating tensor with shape\s*\[[^\]]*\]", said)
        what = f" ({shape[0]})" if shape else ""
        when = f"after epoch {log.last_epoch}" if log.last_epoch else "before the first epoch ended"
        raise TrainingError(
            f"training: out of memory{what} {when} (batch_size {batch_size}): try a lower "
            "training.batch_size, smaller images or model, or data.loading: stream"
        ) from error


def _write_outputs(run: RunDir, prepared: Prepared, log: EpochLog, evaluated: dict[str, Any], kept_epoch: int | None) -> dict[str, Any]:  # fmt: skip
    """metrics.json, predictions.csv, the confusion matrix, model.keras and the learning curves."""
    # The plots are drawn on a thread while the model evaluates (TensorFlow leaves the
    # interpreter free meanwhile) and written in order below; one figure at a time.
    drawing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dltool-plots")
    try:
        curves = drawing.submit(_curves_png, list(log.rows), prepared.config.name, kept_epoch) if log.rows else None  # fmt: skip
        return _evaluate_and_save(run, prepared, evaluated, drawing, curves)
    finally:
        drawing.shutdown(wait=True, cancel_futures=True)


def _curves_png(rows: list[dict[str, Any]], name: str, kept_epoch: int | None) -> bytes:
    return plots.png(plots.learning_curves_figure(rows, name, kept_epoch))


def _evaluate_and_save(run: RunDir, prepared: Prepared, evaluated: dict[str, Any], drawing: ThreadPoolExecutor, curves: Future[bytes] | None) -> dict[str, Any]:  # fmt: skip
    config, dataset, model, clock = (
        prepared.config,
        prepared.dataset,
        prepared.model,
        prepared.clock,
    )
    report = None
    with clock.phase("evaluate"):
        # Every split's numbers come from its predictions, as model.evaluate gives them
        # (StreamingScores): one traced function (predict's) serves every split.
        metrics: dict[str, Any] = {}
        for name, (x, _, _, y) in evaluated.items():
            if name != "test":
                scored = predict(model, x, y, config, dataset.class_names, prepared.batch_size)
                metrics[name] = _scores(model, scored.subset(usable(x)), config)
        if dataset.x_test is not None and dataset.y_test is not None:
            tested = predict(
                model,
                dataset.x_test,
                dataset.y_test,
                config,
                dataset.class_names,
                prepared.batch_size,
            )
            tested = tested.subset(usable(dataset.x_test))  # a file that failed to decode
            metrics["test"] = _scores(model, tested, config)
            if config.task != "regression":
                report = class_report(tested)
                metrics["test_classes"] = report
        # the rows each split's numbers come from (a streamed train split: a sample); only
        # those that could be read: a file that failed to decode counts nowhere
        metrics["evaluated"] = {name: {"rows": int(usable(x).sum()), "of": of} for name, (x, _, of, _) in evaluated.items()}  # fmt: skip
    raise_if_requested()  # a signal during evaluation stops the run before anything is written
    with clock.phase("save"):
        if dataset.x_test is not None and dataset.y_test is not None:
            write_csv(run.file(PREDICTIONS), *predictions_table(tested))
            # the worst mistakes' inputs, for the report's thumbnails and rows, by their
            # position in the test split (predictions.csv's index column)
            worst = tested.positions[mistakes_of(tested)]
            write_npz(run.file(MISTAKES), index=worst, x=_examples(dataset.x_test, worst))
        matrix_png = None
        if report is not None:
            matrix = report["confusion_matrix"]
            figure = partial(plots.confusion_matrix_figure, matrix["rows_true_columns_predicted"], matrix["labels"], "test")  # fmt: skip
            matrix_png = drawing.submit(lambda: plots.png(figure()))
        write_json(run.file(METRICS), metrics)
        save_model(model, run.file(MODEL))
        if matrix_png is not None:
            plots.write_png(matrix_png.result(), run.file(CONFUSION_MATRIX))
        if curves is not None:
            plots.write_png(curves.result(), run.file(LEARNING_CURVES))
    return metrics


def _examples(x: np.ndarray | Rows, positions: np.ndarray) -> np.ndarray:
    """The examples at ``positions`` as an array, whether the split is in memory or streamed."""
    if isinstance(x, Rows):
        return x.read(positions)[0]
    return np.asarray(x)[positions]


def _scores(model: keras.Model, tested: Predictions, config: ExperimentConfig) -> dict[str, float]:
    """Loss and metrics of the test predictions, as ``model.evaluate`` gives them, without a
    second pass over the test split (for a streamed folder: decoding every image again)."""
    scores = StreamingScores(
        model, config.task, tested.class_names, config.training.loss == "categorical_crossentropy"
    )
    scores.add(tested.raw, tested.y_true if config.task == "regression" else tested.y_true[:, 0])
    return scores.metrics()


# A streamed training split's final metrics come from at most this many rows, drawn with the
# run's seed: a full pass would cost a good part of an epoch again (6,000 128x128 images:
# 7.5 s of evaluation against 12.1 s of fit). Data in memory (128 MB at most) is evaluated
# whole. metrics.json "evaluated" says how many rows each split's numbers come from.
TRAIN_EVALUATED_ROWS = 1_000


def _evaluated_rows(dataset: Dataset, labels: dict[str, np.ndarray], seed: int) -> dict[str, tuple[Any, np.ndarray, int, np.ndarray]]:  # fmt: skip
    """split -> (examples, the model's labels, rows in the split, the data's labels) that the
    final metrics are computed on."""
    chosen = {}
    for name, (x, y_data) in dataset.splits().items():
        y, count = labels[name], len(x)
        if name == "train" and isinstance(x, Rows) and count > TRAIN_EVALUATED_ROWS:
            rows = np.sort(np.random.default_rng(seed).choice(count, TRAIN_EVALUATED_ROWS, replace=False))  # fmt: skip
            x, y, y_data = x[rows], y[rows], y_data[rows]
        chosen[name] = (x, y, count, y_data)
    return chosen


def _late_skips(run: RunDir, dataset: Dataset, console: Console) -> dict[str, Any]:
    """What streaming found only while training: files that passed the pre-scan but failed to
    decode (left out of every batch, metric and prediction; added to skipped.txt and run.json)
    and images that were resized."""
    xs = [x for x, _ in dataset.splits().values()]
    resized = sum(len(reader.resized) for reader in image_readers(*xs))
    notes = {**dataset.notes, **({"resized": resized} if resized else {})}
    late = [(file, reason) for file, reason in failures(*xs) if f"{file}: {reason}" not in dataset.skipped]  # fmt: skip
    if late:
        dataset.skipped += [f"{file}: {reason}" for file, reason in late]
        write_text(run.file(SKIPPED), "".join(f"{line}\n" for line in dataset.skipped))
        console.print(
            f"[yellow]note[/yellow]: {len(late)} files failed to decode while training and were "
            f"left out; every one, with the reason: {escape(str(run.file(SKIPPED)))}",
            highlight=False,
        )
        skipped = dict(notes.get("skipped") or {"count": 0, "examples": []})
        examples = [*skipped["examples"], *(str(file) for file, _ in late)]
        notes["skipped"] = {
            "count": len(dataset.skipped),
            "examples": examples[:MAX_SKIPPED_EXAMPLES],
        }
    return {"data": notes} if notes != dataset.notes else {}


def _announce(
    console: Console, config: ExperimentConfig, dataset: Dataset, params: int, run: RunDir
) -> None:
    sizes = [f"{len(x)} {name}" for name, (x, _) in dataset.splits().items()]
    console.print(
        f"[bold]{config.name}[/bold]: {', '.join(sizes)} examples; {params:,} parameters; "
        f"seed {config.seed}; run folder {escape(str(run.path))}",
        highlight=False,
    )
    if dataset.skipped:
        write_text(run.file(SKIPPED), "".join(f"{line}\n" for line in dataset.skipped))
        examples = ", ".join(str(e) for e in dataset.notes["skipped"]["examples"])
        console.print(
            f"[yellow]note[/yellow]: skipped {len(dataset.skipped)} unreadable files "
            f"({escape(printable(examples))}); every one, with the reason: "
            f"{escape(str(run.file(SKIPPED)))}",
            highlight=False,
        )


def _write_report(run: RunDir, console: Console) -> None:
    """report.html from the finished folder. A report that cannot be written does not fail
    the run (its results are saved): a note says so, and ``dltool report`` can try again."""
    from dltool.report import write_run_report

    try:
        write_run_report(run.path)
    except Exception as error:  # the run's own files are complete; the report is a view of them
        console.print(
            f"[yellow]note[/yellow]: report.html not written ({escape(str(error))}); "
            f"try again with: dltool report {escape(shlex.quote(str(run.path)))}",
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
