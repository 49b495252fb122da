"""Run a trained model in a runtime: Keras, or an export in its own (TensorFlow's SavedModel
loader, ONNX Runtime, the LiteRT interpreter).

Every runtime answers the same call, ``predict(x, batch_size)``, with the same array that
``model.predict`` gives: one row per example, the model's outputs as float32. ``dltool
export`` checks an export through it, and ``predict`` and ``evaluate`` use it, so an
export is used exactly as it was checked.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dltool.errors import InputError

FORMATS = ("saved_model", "tflite", "onnx")  # what `dltool export --format` writes
INSTALL_HINT = "pip install 'dltool[export]'"

# The packages each export format needs (import name, distribution), in dltool[export].
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "saved_model": (),
    "tflite": (("ai_edge_litert", "ai-edge-litert"),),
    "onnx": (("tf2onnx", "tf2onnx"), ("onnxruntime", "onnxruntime")),
}


def require_packages(format_name: str, what: str) -> None:
    """Refuse a format whose packages are not installed, saying how to install them.

    Raises:
        InputError: one of the packages is missing.
    """
    missing = [dist for module, dist in NEEDS[format_name] if importlib.util.find_spec(module) is None]  # fmt: skip
    if missing:
        raise InputError(
            f"{what} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed (install them with: {INSTALL_HINT})"
        )


def package_versions(format_name: str) -> dict[str, str]:
    """The versions of the packages that write and run ``format_name``."""
    found = {}
    for _, dist in NEEDS[format_name]:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


class Runtime(Protocol):
    """A model ready to predict: ``model.predict``'s outputs for the rows of ``x``."""

    name: str
    input_name: str  # what the exported model calls its input (export.json's input_signature)

    def predict(self, x: Any, batch_size: int) -> np.ndarray: ...


def batches(x: Any, batch_size: int) -> Iterator[np.ndarray]:
    """``x`` (an array, or streamed :class:`~dltool.data.rows.Rows`) as float32 batches."""
    for start in range(0, len(x), batch_size):
        part = x[start : start + batch_size]
        if hasattr(part, "read"):  # Rows: read the slice's examples from disk
            part = part.read(np.arange(len(part)))[0]
        yield np.ascontiguousarray(part, dtype="float32")


class KerasRuntime:
    """The run's own ``model.keras``, through the same pipeline as training's predictions."""

    name = "keras"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_name = str(model.inputs[0].name) if getattr(model, "inputs", None) else "inputs"

    def predict(self, x: Any, batch_size: int) -> np.ndarray:
        from dltool.pipelines import predict_array

        return predict_array(self.model, x, batch_size)


class OnnxRuntime:
    """An ONNX file in ONNX Runtime, on the CPU."""

    name = "onnxruntime"

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's concern
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = str(self.session.get_inputs()[0].name)

    def predict(self, x: Any, batch_size: int) -> np.ndarray:
        parts = [self.session.run(None, {self.input_name: b})[0] for b in batches(x, batch_size)]
        return np.concatenate(parts).astype("float32", copy=False)


class TfliteRuntime:
    """A ``.tflite`` file in LiteRT's interpreter (TensorFlow's own is deprecated for it)."""

    name = "ai-edge-litert"

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.input = self.interpreter.get_input_details()[0]
        self.input_name = str(self.input["name"])
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.rows = -1  # the batch size the tensors are allocated for

    def predict(self, x: Any, batch_size: int) -> np.ndarray:
        from dltool.backend import quiet_stderr

        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            return self._predict(x, batch_size)

    def _predict(self, x: Any, batch_size: int) -> np.ndarray:
        parts = []
        for part in batches(x, batch_size):
            if len(part) != self.rows:  # resize only when the batch size changes (the last one)
                shape = [len(part), *self.input["shape"][1:]]
                self.interpreter.resize_tensor_input(self.input["index"], shape)
                self.interpreter.allocate_tensors()
                self.rows = len(part)
            self.interpreter.set_tensor(self.input["index"], part)
            self.interpreter.invoke()
            parts.append(self.interpreter.get_tensor(self.output_index).copy())
        return np.concatenate(parts).astype("float32", copy=False)


class SavedModelRuntime:
    """A SavedModel folder in TensorFlow, through the ``serve`` endpoint Keras exports."""

    name = "tensorflow"

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))  # holds the variables ``serve`` reads
        self.serve = self.loaded.serve
        self.input_name = str(self.serve.input_signature[0].name)

    def predict(self, x: Any, batch_size: int) -> np.ndarray:
        parts = [np.asarray(self.serve(b)) for b in batches(x, batch_size)]
        return np.concatenate(parts).astype("float32", copy=False)


def load_runtime(format_name: str, path: Path) -> Runtime:
    """The exported model at ``path`` in its own runtime.

    Raises:
        InputError: the runtime is not installed, or cannot load the file.
    """
    require_packages(format_name, f"a {format_name} model")
    kinds: dict[str, Any] = {
        "onnx": OnnxRuntime,
        "tflite": TfliteRuntime,
        "saved_model": SavedModelRuntime,
    }
    try:
        runtime: Runtime = kinds[format_name](path)
    except Exception as error:  # a foreign file: onnxruntime's and TensorFlow's own errors too
        text = " ".join(str(error).split())
        raise InputError(
            f"{path}: the {format_name} runtime cannot load it: {text[:300]}"
        ) from error
    return runtime
