"""Use a finished run: ``dltool predict`` (new inputs) and ``dltool evaluate`` (labelled data).

Everything the model needs to read raw inputs like its training data travels
with the run: the resolved ``config.yaml`` (image size, colour mode, label
column) and ``run.json`` (feature columns, class names, input shape); the
normalization statistics are inside ``model.keras`` itself.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from dltool.behind import Behind
from dltool.config import ExperimentConfig
from dltool.csvtext import csv_text
from dltool.errors import InputError
from dltool.evaluation import Predictions, fixed_point
from dltool.files import IMAGE_SUFFIXES
from dltool.inputs import (
    Chunk,
    InputSpec,
    array_chunks,
    csv_chunks,
    image_chunks,
    image_files,
)
from dltool.interrupts import handling_signals, raise_if_requested
from dltool.messages import show
from dltool.rundir import (
    CONFIG,
    EVALUATION_MATRIX,
    EVALUATION_MATRIX_PLOT,
    EVALUATION_METRICS,
    EVALUATIONS_DIR,
    EXPORT_CONFIG,
    EXPORT_JSON,
    EXPORT_MODELS,
    MODEL,
    PREDICTIONS_DIR,
    RUN_JSON,
    RunDir,
    atomic_path,
    read_json_object,
    write_json,
)

if TYPE_CHECKING:
    import keras

    from dltool.runtimes import Runtime


@dataclass
class TrainedRun:
    """A completed run folder, or a folder ``dltool export`` wrote, read without TensorFlow.

    For an export, ``info`` is export.json's copy of the run.json keys predict needs,
    ``config`` its copy of the run's config.yaml, and ``model_file`` the exported model.
    """

    path: Path
    config: ExperimentConfig
    info: dict[str, Any]
    model_file: Path
    export: dict[str, Any] | None = None  # export.json, for an export

    @property
    def export_format(self) -> str | None:
        return str(self.export["format"]) if self.export is not None else None

    def changed(self) -> str | None:
        """Why the model file is not the one training saved (or export checked), else None."""
        from dltool.fingerprint import model_changed, sha256_path

        if self.export is None:
            return model_changed(self.model_file, self.info)
        recorded = self.export.get("sha256")
        if not isinstance(recorded, str) or sha256_path(self.model_file) == recorded:
            return None
        return f"{self.model_file}: changed since dltool export checked it ({EXPORT_JSON}'s sha256 differs)"  # fmt: skip

    def runtime(self) -> Runtime:
        """The model, ready to predict: model.keras in Keras, an export in its own runtime."""
        from dltool.runtimes import KerasRuntime, load_runtime

        if self.export_format is None:
            return KerasRuntime(self.load_model())
        return load_runtime(self.export_format, self.model_file)

    def scorer(self, runtime: Runtime) -> tuple[Any, float]:
        """(a compiled Keras model whose loss and metrics score the outputs, the weight
        penalty to add to the loss): the model itself, or for an export a stand-in compiled
        like the run, with the penalty model.keras adds (recorded by export)."""
        from dltool.runtimes import KerasRuntime

        if isinstance(runtime, KerasRuntime):
            return runtime.model, 0.0
        import keras

        from dltool.model import make_metrics

        assert self.export is not None  # noqa: S101  (only exports have another runtime)
        outputs = int(self.export["output_shape"][-1])
        stand_in = keras.Sequential([keras.Input(shape=(outputs,)), keras.layers.Identity()])
        stand_in.compile(loss=self.config.training.loss, metrics=make_metrics(self.config))
        penalty = self.info.get("regularization_loss")
        return stand_in, float(penalty) if isinstance(penalty, int | float) else 0.0

    @property
    def class_names(self) -> list[str] | None:
        names = self.info.get("class_names")
        return list(names) if names else None

    @property
    def task(self) -> str:
        return str(self.info.get("task", self.config.task))

    def load_model(self) -> keras.Model:
        """The run's model (Keras safe mode), checked against the class names in run.json.

        Raises:
            InputError: the model cannot be loaded, or run.json's class_names do not
                fit its outputs (a binary model has one output and two classes).
        """
        from dltool.model import load_trained_model

        model = load_trained_model(self.model_file)
        names = self.info.get("class_names")
        if self.task == "regression" or names is None:
            return model
        outputs = int(model.output_shape[-1])
        expected = 2 if outputs == 1 else outputs
        fits = isinstance(names, list) and len(names) == expected == len(set(map(str, names)))
        if not fits or not all(isinstance(name, str) for name in names):
            raise InputError(
                f"{self.path / RUN_JSON}: class_names does not fit the model (received "
                f"{show(names)}; expected {expected} different names for its {outputs} "
                f"output{'s' if outputs > 1 else ''})"
            )
        return model

    def input_spec(self) -> InputSpec:
        data = self.config.data
        shape = list(self.info.get("input_shape") or self.config.model.input_shape)
        image_size: tuple[int, int] | None = None
        color_mode = getattr(data, "color_mode", None)
        if len(shape) == 3 and shape[-1] in (1, 3):  # images: (height, width, channels)
            image_size = (shape[0], shape[1])
            color_mode = color_mode or ("grayscale" if shape[-1] == 1 else "rgb")
        return InputSpec(
            input_shape=shape,
            feature_names=self.info.get("feature_names"),
            image_size=image_size,
            color_mode=color_mode or "rgb",
            target=getattr(data, "target", None) or "label",
            # Runs from before run.json recorded it read image files as they are.
            image_file_scale=int(self.info.get("image_file_scale") or 1),
        )


def open_run(target: Path) -> TrainedRun:
    """A run folder, or the model file inside one, checked to be complete; or an export
    folder (``dltool export``), or the exported model inside one.

    Raises:
        InputError: missing, not a run folder, not completed, or incomplete.
    """
    export_folder = _export_folder(target)
    if export_folder is not None:
        return open_export(export_folder)
    if target.suffix.lower() in (".onnx", ".tflite"):
        raise InputError(
            f"{target}: not in a dltool export folder (expected {EXPORT_JSON} beside it; "
            "make one with: dltool export RUN --format onnx|tflite|saved_model)"
        )
    if target.suffix.lower() in (".h5", ".hdf5"):
        raise InputError(f"{target}: HDF5 models are refused; use a run folder or its {MODEL}")
    model_file = target if target.suffix == ".keras" else target / MODEL
    folder = model_file.parent
    if not folder.is_dir():
        raise InputError(f"{target}: no such run folder")
    if not (folder / RUN_JSON).is_file():
        raise InputError(f"{folder}: not a dltool run folder (expected {RUN_JSON} and {CONFIG} in it)")  # fmt: skip
    run = RunDir(folder)
    info = run.require_completed()
    if not model_file.is_file():
        raise InputError(f"{folder}: {model_file.name} is missing (the run folder is incomplete)")
    return TrainedRun(path=folder, config=run.config(), info=info, model_file=model_file)


def _export_folder(target: Path) -> Path | None:
    """The export folder ``target`` is, or holds the model of; None for anything else."""
    if target.is_dir() and (target / EXPORT_JSON).is_file():
        return target
    if target.name in EXPORT_MODELS.values() and (target.parent / EXPORT_JSON).is_file():
        return target.parent
    return None


def open_export(folder: Path) -> TrainedRun:
    """An export folder: its export.json, config.yaml copy and exported model.

    Raises:
        InputError: export.json is unreadable or names an unknown format, or a file is missing.
    """
    from dltool.runtimes import FORMATS

    export = read_json_object(folder / EXPORT_JSON)
    format_name = export.get("format")
    run_info = export.get("run")
    if format_name not in FORMATS or not isinstance(run_info, dict):
        raise InputError(
            f"{folder / EXPORT_JSON}: not an export.json dltool wrote (expected a format, one "
            f"of {', '.join(FORMATS)}, and the run's details)"
        )
    model_file = folder / EXPORT_MODELS[format_name]
    for needed in (model_file, folder / EXPORT_CONFIG):
        if not needed.exists():
            raise InputError(f"{folder}: {needed.name} is missing (the export folder is incomplete)")  # fmt: skip
    return TrainedRun(folder, RunDir(folder).config(), run_info, model_file, export)


def input_chunks(path: Path, run: TrainedRun, spec: InputSpec, batch: int, labelled: bool) -> Iterator[Chunk]:  # fmt: skip
    """Chunks of ``path``, read the way its kind needs (CSV, NumPy, image file or folder)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if suffix == ".csv":
        return csv_chunks(path, spec, labelled)
    if suffix in (".npy", ".npz"):
        return array_chunks(path, spec, labelled)
    if path.is_dir() or suffix in IMAGE_SUFFIXES:
        if spec.image_size is None:
            raise InputError(
                f"{path}: {'a folder' if path.is_dir() else 'an image file'}, but this run was "
                "trained on a table (expected a .csv, .npy or .npz file)"
            )
        if labelled:
            files, labels = _labelled_images(path, run)
            return image_chunks(files, spec, batch, labels)
        return image_chunks(image_files(path), spec, batch)
    raise InputError(
        f"{path}: unknown input type (expected .csv, .npy, .npz, an image file or a folder of images)"
    )


def _labelled_images(folder: Path, run: TrainedRun) -> tuple[list[Path], list[Any]]:
    """Images in class sub-folders named like the training classes."""
    names = run.class_names or []
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [c for c in classes if c not in names]
    if not classes or unknown:
        raise InputError(
            f"{folder}: expected one sub-folder per class named like the training classes "
            f"({', '.join(names)}); found {', '.join(classes) or 'none'}"
        )
    files: list[Path] = []
    labels: list[Any] = []
    for name in classes:
        found = image_files(folder / name)
        files += found
        labels += [name] * len(found)
    return files, labels


@dataclass
class PredictResult:
    output: Path
    rows: int
    header: list[str]
    first_rows: list[list[Any]]
    counts: dict[str, int]
    notes: list[str]
    # What held the command up, in seconds (benchmarks/): loading the model, reading, predicting,
    # writing (waiting for the writer thread, then flush, fsync and rename); these add up to
    # the whole. Also write_behind: the writer thread's own time formatting and writing, most
    # of it hidden behind predicting.
    seconds: dict[str, float]


def predict_file(run: TrainedRun, input_path: Path, output: Path | None, batch_size: int, overwrite: bool = False) -> PredictResult:  # fmt: skip
    """Predict every example of ``input_path``; write one CSV row each, atomically.

    A thread formats and writes each chunk while the next one is read and predicted (numpy,
    file writes and the model calls release the GIL). A thread reading ahead as well saved
    nothing on 2 cores: what it hid, the model calls lost (benchmarks/results-predict.md).

    Raises:
        InputError: bad input; nothing is written, not even a folder.
    """
    seconds = dict.fromkeys(("load", "read", "predict", "write"), 0.0)
    mark = time.perf_counter()

    def lap(phase: str) -> None:  # the time since the previous lap goes to ``phase``
        nonlocal mark
        seconds[phase] += time.perf_counter() - mark
        mark = time.perf_counter()

    target = output or RunDir(run.path).new_output(PREDICTIONS_DIR, ".csv")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists (choose another --output, or add --overwrite)")
    runtime = run.runtime()
    spec = run.input_spec()
    lap("load")

    chunks = (c for c in input_chunks(input_path, run, spec, batch_size, labelled=False) if len(c.x))  # fmt: skip
    first = next(chunks, None)  # read and checked before anything is created
    if first is None:
        raise InputError(f"{input_path}: no examples to predict (the input is empty)")
    with _nothing_left_on_failure(target) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:  # fmt: skip
        table = _OutputTable(run, handle)
        # Ctrl-C and SIGTERM stop between chunks, raised here, not inside TensorFlow or a thread.
        with handling_signals():
            with Behind(table.write) as behind:
                for chunk in itertools.chain([first], chunks):
                    raise_if_requested()
                    lap("read")
                    raw = runtime.predict(chunk.x, batch_size)
                    lap("predict")
                    behind.put((chunk, raw))
                    lap("write")
            raise_if_requested()  # one while the last chunks were written: nothing is kept
        lap("write")  # the writer's last chunks
    lap("write")  # flush, fsync and rename
    rounded = {phase: round(value, 3) for phase, value in seconds.items()}
    rounded["write_behind"] = round(behind.busy, 3)
    return PredictResult(target, table.rows, table.header, table.first_rows, dict(table.counts), spec.notes, rounded)  # fmt: skip


class _OutputTable:
    """The output CSV, written a chunk at a time: what it has so far (header, rows, first rows,
    predicted classes), for the summary."""

    def __init__(self, run: TrainedRun, handle: IO[str]) -> None:
        self.run = run
        self.handle = handle
        self.header: list[str] = []
        self.rows = 0
        self.first_rows: list[list[Any]] = []
        self.counts: Counter[str] = Counter()

    def write(self, item: tuple[Chunk, np.ndarray]) -> None:
        chunk, raw = item
        for start in range(0, len(raw), WRITE_ROWS):
            ids = {name: values[start : start + WRITE_ROWS] for name, values in chunk.ids.items()}
            self._write_rows(ids, raw[start : start + WRITE_ROWS])

    def _write_rows(self, ids: dict[str, Any], raw: np.ndarray) -> None:
        import pandas as pd

        columns = {**ids, **_prediction_columns(raw, self.run)}
        text = csv_text(columns, header=not self.header)
        if text is None:  # a field pandas quotes, or one that is not text: as pandas writes it
            pd.DataFrame(columns).to_csv(self.handle, header=not self.header, index=False)
        else:
            self.handle.write(text)
        self.header = self.header or [str(c) for c in columns]
        if "prob_" in "".join(self.header):
            where, names = pd.factorize(columns["predicted"])
            self.counts.update(dict(zip(names, np.bincount(where).tolist(), strict=True)))
        if len(self.first_rows) < 5:
            shown = {name: values[: 5 - len(self.first_rows)] for name, values in columns.items()}
            self.first_rows += pd.DataFrame(shown).to_numpy().tolist()
        self.rows += len(raw)


# Rows formatted and written at a time: a whole .npy chunk (349,525 rows) at once peaked at
# 114 MiB of temporary arrays (tracemalloc), 50,000 rows at a time at 21 MiB.
WRITE_ROWS = 50_000


@contextlib.contextmanager
def _nothing_left_on_failure(target: Path) -> Iterator[Path]:
    """:func:`atomic_path`, and on failure also remove the folders it had to create."""
    created = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    try:
        with atomic_path(target, suffix=".csv") as temporary:
            yield temporary
    except BaseException:
        for folder in created:  # deepest first; a folder someone else filled meanwhile stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _prediction_columns(raw: np.ndarray, run: TrainedRun) -> dict[str, np.ndarray]:
    """Output columns for a chunk: prob_<class>... then predicted (or just predicted).

    Values are fixed-point text with 6 decimals, as in the run's predictions.csv
    (``0.000001``, never ``1e-06``), formatted here so that the input's own id
    columns are written as they were read.
    """
    task = run.task
    if task == "regression":
        return {"predicted": fixed_point(raw[:, 0])}
    read = Predictions(
        task=task, raw=raw, y_true=np.zeros((len(raw), 1)), class_names=_names(run, raw)
    )
    probabilities = fixed_point(read.probabilities)
    columns = {f"prob_{name}": probabilities[:, i] for i, name in enumerate(read.class_names)}
    columns["predicted"] = np.asarray(read.class_names, dtype=object)[read.predicted_index]
    return columns


def _names(run: TrainedRun, raw: np.ndarray) -> list[str]:
    return run.class_names or [str(i) for i in range(max(2, raw.shape[1]))]


@dataclass
class EvaluateResult:
    folder: Path
    metrics: dict[str, float]
    report: dict[str, Any] | None
    examples: int
    notes: list[str]


def evaluate_file(run: TrainedRun, data_path: Path, batch_size: int, target: str | None = None) -> EvaluateResult:  # fmt: skip
    """Loss and metrics of the run's model on labelled data, plus per-class report and confusion matrix.

    The data is read, predicted and scored one chunk at a time (memory stays flat);
    the results equal one ``model.evaluate`` over every row.

    Raises:
        InputError: bad input; nothing is written.
    """
    from dltool import plots
    from dltool.evaluation import StreamingScores

    runtime = run.runtime()
    scorer, penalty = run.scorer(runtime)
    spec = run.input_spec()
    if target is not None:
        spec.target = target
    task = run.task
    one_hot = run.config.training.loss == "categorical_crossentropy"
    scores: StreamingScores | None = None
    for chunk in input_chunks(data_path, run, spec, batch_size, labelled=True):
        if len(chunk.x) == 0:
            continue
        y = _label_indices(chunk.labels or [], run, data_path)
        raw = runtime.predict(chunk.x, batch_size)
        if scores is None:  # the class names need the model's output width
            scores = StreamingScores(scorer, task, _names(run, raw), one_hot, penalty)
        scores.add(raw, y)
    if scores is None:
        raise InputError(f"{data_path}: no examples to evaluate (the input is empty)")
    metrics, report = scores.metrics(), scores.report()
    folder = RunDir(run.path).new_output(EVALUATIONS_DIR)  # created only now: the input was good
    if report is not None:
        matrix = report["confusion_matrix"]
        write_json(folder / EVALUATION_MATRIX, matrix)
        plots.confusion_matrix(
            matrix["rows_true_columns_predicted"],
            matrix["labels"],
            folder / EVALUATION_MATRIX_PLOT,
            data_name=data_path.name,  # the data evaluate scored, not "test"
        )
    write_json(
        folder / EVALUATION_METRICS,
        {"data": str(data_path), "examples": scores.rows, "metrics": metrics, "classes": report},
    )
    return EvaluateResult(folder, metrics, report, scores.rows, spec.notes)


def _label_indices(labels: list[Any], run: TrainedRun, path: Path) -> np.ndarray:
    """Labels as the model's class indices: class names map by name, numbers stay numbers."""
    task = run.task
    if task == "regression":
        return np.asarray(labels, dtype="float64")
    names = run.class_names or []
    out = np.empty(len(labels), dtype="int64")
    unknown: set[str] = set()
    for i, label in enumerate(labels):
        text = str(label.item() if isinstance(label, np.generic) else label)
        if text in names:
            out[i] = names.index(text)
        elif text.lstrip("-").isdigit() and 0 <= int(text) < max(len(names), 2):
            out[i] = int(text)
        else:
            unknown.add(text)
    if unknown:
        raise InputError(
            f"{path}: labels {', '.join(sorted(map(repr, unknown))[:5])} are not classes of this run (expected one of {', '.join(names)})"
        )
    return out
