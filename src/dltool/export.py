"""``dltool export``: a run's ``model.keras`` as a SavedModel, a TFLite file or an ONNX file,
checked in its own runtime before it is kept.

The Keras 3 routes that work: ``Model.export(format="tf_saved_model" | "onnx")``, and
``TFLiteConverter.from_saved_model`` (``from_keras_model`` fails on Keras 3, keras#19108;
tf2onnx's ``from_keras`` too, tensorflow-onnx#2329). Keras traces the model for export
without ``training=False``, so augmentation layers would be exported active (random flips at
inference, and random ops that TFLite and ONNX cannot express): they are left out of the
exported model, which is exact, since at inference they pass images through unchanged.

Everything is written to a hidden folder beside the target and renamed over it only once
the exported model, run on the run's test split, agrees with ``model.keras``: a failed
export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltool.backend import quiet_stderr
from dltool.errors import ExportError, InputError, UsageError
from dltool.messages import did_you_mean
from dltool.rundir import (
    CONFIG,
    EXPORT_CONFIG,
    EXPORT_JSON,
    EXPORT_MODELS,
    EXPORTS_DIR,
    now_iso,
    write_json,
)
from dltool.runtimes import (
    FORMATS,
    KerasRuntime,
    load_runtime,
    package_versions,
    require_packages,
)

if TYPE_CHECKING:
    import keras

    from dltool.predict import TrainedRun
    from dltool.runtimes import Runtime

# The largest difference allowed between an export's outputs and model.keras's, in absolute
# terms for probabilities (regression: relative to the value, past 1). Converters reorder
# float32 arithmetic: about 1e-7 was seen on the shipped configs.
TOLERANCE = 1e-4
CHECK_BATCH = 256  # test rows per call while checking


@dataclass
class ExportResult:
    folder: Path
    format: str
    model: Path
    rows: int
    max_abs_difference: float
    same_class_share: float | None
    seconds: float


def export_run(run_path: Path, format_name: str, output: Path | None, overwrite: bool) -> ExportResult:  # fmt: skip
    """Export a completed run's model to ``format_name`` and check it on the test split.

    Raises:
        UsageError: an unknown format.
        InputError: not a completed run, model.keras changed since training, the output
            exists (without ``overwrite``), or the format's packages are missing.
        ExportError: the format cannot express a layer, or the export's outputs differ
            from model.keras; nothing is kept.
    """
    from dltool.predict import open_run

    started = time.perf_counter()
    if format_name not in FORMATS:
        raise UsageError(
            f"--format: unknown format{did_you_mean(format_name, FORMATS)} (received "
            f"{format_name!r}; expected one of {', '.join(FORMATS)})"
        )
    run = open_run(run_path)
    if run.export_format is not None:
        raise InputError(f"{run.path}: already an export; give the run folder it came from")
    changed = run.changed()
    if changed:
        raise InputError(
            f"{changed}; refusing to export a model that is not the one trained and tested "
            "(restore the file, or train the run again)"
        )
    target = output or run.path / EXPORTS_DIR / format_name
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists (choose another --output, or add --overwrite)")
    if target.exists() or target.is_symlink():
        _refuse_to_replace(target, run.path)
    require_packages(format_name, f"dltool export --format {format_name}")
    from dltool.backend import import_keras

    import_keras()  # quietly, only once the export is not refused
    model = run.load_model()
    x_test = _test_split(run, model)
    reference = KerasRuntime(model).predict(x_test, CHECK_BATCH)
    inference = inference_model(model)
    with _scratch_beside(target) as scratch:
        model_path = scratch / EXPORT_MODELS[format_name]
        _write(format_name, inference, model_path, scratch)
        try:
            runtime = load_runtime(format_name, model_path)
        except InputError as error:  # ONNX Runtime refuses operations it has no kernel for
            raise _cannot_express(format_name, error.__cause__ or error, inference) from error
        try:
            exported = runtime.predict(x_test, CHECK_BATCH)
        except Exception as error:  # the runtime's own errors, whatever their class
            raise _cannot_express(format_name, error, inference) from error
        check = compare(reference, exported, run.task)
        if not check["passed"]:
            raise ExportError(_differs(format_name, run.path, check))
        shutil.copyfile(run.path / CONFIG, scratch / EXPORT_CONFIG)
        write_json(scratch / EXPORT_JSON, _export_json(run, model, runtime, model_path, check))
        _replace(scratch, target)
    return ExportResult(
        folder=target,
        format=format_name,
        model=target / EXPORT_MODELS[format_name],
        rows=check["rows"],
        max_abs_difference=check["max_abs_difference"],
        same_class_share=check["same_class_share"],
        seconds=round(time.perf_counter() - started, 3),
    )


def inference_model(model: keras.Model) -> keras.Model:
    """The model as it predicts: the same layers (and weights) without the augmentation layers,
    which pass inputs through unchanged at inference but would be traced active by export."""
    import keras

    from dltool.layers import AUGMENTATION_CLASSES

    kept = [layer for layer in model.layers if type(layer).__name__ not in AUGMENTATION_CLASSES]
    if len(kept) == len(model.layers):
        return model
    return keras.Sequential([keras.Input(shape=model.input_shape[1:]), *kept], name=model.name)


def _test_split(run: TrainedRun, model: keras.Model) -> Any:
    """The test examples the run was scored on (the same rows: seed, split and --smoke cap)."""
    import io

    from rich.console import Console

    from dltool.prepare import prepare

    prepared = prepare(
        run.config,
        str(run.path / CONFIG),
        Console(file=io.StringIO()),  # notes about batch sizes are the training's business
        bool(run.info.get("smoke")),
        model=model,
    )
    return prepared.dataset.x_test


@contextlib.contextmanager
def _scratch_beside(target: Path) -> Iterator[Path]:
    """A new hidden folder beside ``target``; removed, with any folder made for it, on failure."""
    created = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    scratch.mkdir()
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in created:  # deepest first; a folder someone else filled meanwhile stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _refuse_to_replace(target: Path, run_folder: Path) -> None:
    """``--overwrite`` replaces an earlier export, nothing else: not a folder without
    export.json, not a file, not the run folder or a folder holding it."""
    resolved, run = target.resolve(), run_folder.resolve()
    if target.is_symlink() or not target.is_dir() or not (target / EXPORT_JSON).is_file():
        raise InputError(
            f"{target}: exists and is not an earlier export (no {EXPORT_JSON} in it); "
            "--overwrite only replaces an export (choose another --output)"
        )
    if resolved == run or resolved in run.parents:
        raise InputError(f"{target}: holds the run folder {run_folder}; choose another --output")


def _replace(scratch: Path, target: Path) -> None:
    """Rename the checked export over ``target``; an earlier export there (--overwrite) goes.
    If the new one cannot be put in place, the earlier one is put back."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.{secrets.token_hex(4)}.old"
        target.rename(old)
    try:
        scratch.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _write(format_name: str, model: keras.Model, path: Path, scratch: Path) -> None:
    """Write ``model`` to ``path`` in ``format_name``; the converters' logs are dropped.

    Raises:
        ExportError: the converter refused the model (a layer it cannot express).
    """
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(
        logging.CRITICAL
    )  # it logs unsupported ops and goes on; the check catches them
    try:
        with quiet_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # converters' deprecation noise
            if format_name == "onnx":
                _write_onnx(model, path)
            elif format_name == "saved_model":
                model.export(str(path), format="tf_saved_model", verbose=False)
            else:
                _write_tflite(model, path, scratch)
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as error:
        raise _cannot_express(format_name, error, model) from error
    finally:
        tf2onnx_log.setLevel(level)


def _write_onnx(model: keras.Model, path: Path) -> None:
    """tf2onnx on the model's frozen graph. Not ``model.export(format="onnx")``: it leaves an
    adapted Normalization layer's mean and variance (tensors, not variables) as inputs of the
    ONNX graph, which ONNX Runtime then asks the caller to feed."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,  # what tf2onnx itself freezes graphs with
    )

    with contextlib.suppress(ImportError):  # Keras' fix of tf2onnx for NumPy 2 (np.object, np.cast)
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="inputs")]
    serve = tf.function(lambda inputs: model(inputs, training=False), input_signature=signature)
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=[tensor.name for tensor in frozen.inputs],
        output_names=[tensor.name for tensor in frozen.outputs],
        output_path=str(path),
    )


def _write_tflite(model: keras.Model, path: Path, scratch: Path) -> None:
    """SavedModel first, then TFLiteConverter.from_saved_model (from_keras_model fails on Keras 3)."""
    import tensorflow as tf

    saved = scratch / "saved_model_for_tflite"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    try:
        converted = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    except Exception as error:  # tf.lite's ConverterError is not exported under a stable name
        raise ValueError(str(error)) from error
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    path.write_bytes(converted)


# An operation named in a converter's or a runtime's error, with its layer's path:
#   ONNX Runtime: In Node, ("sequential_1/dense_6_1/Expm1", Expm1, ...) ... No Op registered
#   TFLite: "sequential_1/random_flip_1/..." 'tf.StatelessRandomUniformV2' op is neither ...
_ONNX_NODE = re.compile(r'\("([^"]+)", (\w+),')
_TFLITE_OP = re.compile(r"'tf\.(\w+)' op is neither")


def _cannot_express(format_name: str, error: BaseException, model: keras.Model) -> ExportError:
    """One line naming the layer and the operation that the format has no equivalent for."""
    text = " ".join(str(error).split())
    operation, where = None, text
    onnx_node = _ONNX_NODE.search(text)
    tflite_op = _TFLITE_OP.search(text)
    if onnx_node:
        where, operation = onnx_node.group(1), onnx_node.group(2)
    elif tflite_op:
        operation = tflite_op.group(1)
        where = text[: tflite_op.start()]
    layer = _layer_named_in(where, model)
    if operation is None:
        return ExportError(f"{format_name}: the export failed and nothing was kept: {text[:300]}")
    described = f"layer {layer.name!r} ({_layer_kind(layer)})" if layer is not None else "a layer"
    others = [name for name in FORMATS if name != format_name]
    return ExportError(
        f"{format_name} cannot express {described}: it uses the operation {operation}, which "
        f"{format_name} has no equivalent for; nothing was kept (expected a model of layers "
        f"{format_name} supports; export it as {' or '.join(others)}, or change the layer)"
    )


def _layer_named_in(text: str, model: keras.Model) -> Any:
    """The model's layer that a graph path names: ``sequential_1/dense_6_1/Expm1`` is
    ``dense_6`` (TensorFlow's name scopes add ``_1``)."""
    names = {layer.name: layer for layer in model.layers}
    for part in re.findall(r"[A-Za-z0-9_]+", text):
        for candidate in (re.sub(r"_\d+$", "", part), part):
            if candidate in names:
                return names[candidate]
    return None


def _layer_kind(layer: Any) -> str:
    """``Dense, activation celu``: the layer's class and its activation, when it has one."""
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return f"{type(layer).__name__}, activation {name}" if name and name != "linear" else type(layer).__name__  # fmt: skip


def compare(reference: np.ndarray, exported: np.ndarray, task: str) -> dict[str, Any]:
    """How far an export's outputs are from model.keras's on the same rows."""
    from dltool.evaluation import Predictions

    if exported.shape != reference.shape:
        return {
            "rows": len(reference),
            "passed": False,
            "shape": [list(reference.shape), list(exported.shape)],
            "max_abs_difference": float("inf"),
            "same_class_share": None,
            "tolerance": TOLERANCE,
        }
    difference = np.abs(exported.astype("float64") - reference.astype("float64"))
    allowed = TOLERANCE * (np.maximum(1.0, np.abs(reference)) if task == "regression" else 1.0)
    worst = np.unravel_index(int(np.argmax(difference)), difference.shape) if difference.size else (0,)  # fmt: skip
    share = None
    if task != "regression":
        names = [str(i) for i in range(max(2, reference.shape[1]))]
        labels = np.zeros((len(reference), 1))

        def classes(raw: np.ndarray) -> np.ndarray:
            return Predictions(task=task, raw=raw, y_true=labels, class_names=names).predicted_index

        share = float(np.mean(classes(reference) == classes(exported))) if len(reference) else 1.0
    return {
        "rows": len(reference),
        "max_abs_difference": float(difference.max()) if difference.size else 0.0,
        "worst_row": int(worst[0]),
        "same_class_share": share,
        "tolerance": TOLERANCE,
        "passed": bool(np.all(difference <= allowed)),
    }


def _differs(format_name: str, run_path: Path, check: dict[str, Any]) -> str:
    if "shape" in check:
        expected, received = check["shape"]
        return (
            f"{format_name}: the export's outputs have shape {received}, model.keras's "
            f"{expected} on the test split of {run_path}; nothing was kept"
        )
    same = check["same_class_share"]
    classes = f"; the same class in {same:.1%} of rows" if same is not None else ""
    return (
        f"{format_name}: the export differs from model.keras on the test split of {run_path}: "
        f"the largest difference is {check['max_abs_difference']:.3g} (row {check['worst_row']}; "
        f"expected at most {TOLERANCE:g}){classes}; nothing was kept"
    )


def _export_json(run: TrainedRun, model: keras.Model, runtime: Runtime, model_path: Path, check: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """export.json: the format, the check, versions, the input signature and what predict needs."""
    import keras

    from dltool.fingerprint import sha256_path
    from dltool.training import versions

    info = run.info
    format_name = next(name for name, file in EXPORT_MODELS.items() if file == model_path.name)
    penalty = float(keras.ops.convert_to_numpy(keras.ops.sum(model.losses))) if model.losses else 0.0  # fmt: skip
    return {
        "format": format_name,
        "file": model_path.name,
        "sha256": sha256_path(model_path),  # predict and evaluate warn when it no longer matches
        "created_at": now_iso(),
        "check": {"split": "test", "runtime": runtime.name, **check},
        "input_signature": {
            "name": runtime.input_name,
            "shape": [None, *model.input_shape[1:]],
            "dtype": "float32",
        },
        "output_shape": [None, *model.output_shape[1:]],
        "versions": {**versions(), **package_versions(format_name)},
        "run": {
            "path": str(run.path.resolve()),
            "name": info.get("name"),
            "model_sha256": info.get("model_sha256"),
            "regularization_loss": penalty,  # evaluate adds it to the loss, as model.keras does
            **{key: info.get(key) for key in PREDICT_KEYS},
        },
    }


# run.json keys that predict and evaluate read: an export folder carries them.
PREDICT_KEYS = ("input_shape", "feature_names", "class_names", "task", "image_file_scale")
