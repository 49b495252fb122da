"""Inside the model while it trains (``training.record_internals``), for the report.

After every epoch, on one fixed probe batch of training data (at most 64 rows):

- a histogram of each layer's kernel (its weights without the bias);
- for each layer with a ReLU activation, the fraction of its units that are dead: zero for
  every probe example (a conv layer's unit is a filter, zero at every position);
- the norm of each layer's gradient of the loss (TensorFlow backend only).

At the end, for CNNs: the first conv layer's filters and the feature maps of one test image
at each conv layer. Written to RUN/internals.json and RUN/internals.npz at the end of
training (a run interrupted before its end has none).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from dltool.backend import import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import keras``

import keras  # noqa: E402

from dltool.rundir import INTERNALS, INTERNALS_PICTURES, RunDir, write_json, write_npz  # noqa: E402

PROBE_ROWS = 64  # examples measured after each epoch, the same every time: a pass over them costs
# about 64 / (training rows) of an epoch (3% for 2,000 rows), plus a few milliseconds
BINS = 30  # per weight histogram
MAPS_PER_LAYER = 16  # feature maps kept per conv layer (the first channels)


def _as_list(outputs: Any) -> list[Any]:
    """A model's outputs as a list: a model with one output returns it bare."""
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _is_relu(layer: Any) -> bool:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "relu"


def _is_conv(layer: Any) -> bool:
    return isinstance(layer, keras.layers.Conv2D | keras.layers.SeparableConv2D)


class RecordInternals(keras.callbacks.Callback):
    """Measures the model after each epoch (see the module); writes its files at the end."""

    def __init__(self, run: RunDir, x_probe: np.ndarray, y_probe: np.ndarray, picture: np.ndarray | None) -> None:  # fmt: skip
        super().__init__()
        self.run = run
        self.x_probe, self.y_probe = x_probe[:PROBE_ROWS], y_probe[:PROBE_ROWS]
        self.picture = picture  # one test example, for the feature maps
        self.epochs: list[int] = []
        self.histograms: dict[str, dict[str, list[Any]]] = {}
        self.dead: dict[str, list[float]] = {}
        self.gradients: dict[str, list[float]] = {}
        self._relu: list[Any] = []
        self._probe: Any = None
        self._owners: list[tuple[str, list[int]]] = []
        self.seconds = 0.0
        self._step: Any = None  # the traced measurement (TensorFlow), made at the first epoch
        self._x: Any = None
        self._y: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        with self._timed():
            self._begin()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        with self._timed():
            self._epoch(epoch)

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        """Count the seconds recording takes: internals.json says what it cost this run."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    def _begin(self) -> None:
        # One functional view of the model: every ReLU layer's output and the prediction, so a
        # single forward pass (and, on TensorFlow, one backward pass) measures everything.
        self._relu = [layer for layer in self.model.layers if _is_relu(layer)]
        outputs = [layer.output for layer in self._relu] + [self.model.outputs[0]]
        self._probe = keras.Model(self.model.inputs[0], outputs)
        if keras.backend.backend() == "tensorflow":
            variables = self.model.trainable_variables
            self._owners = [
                (
                    layer.name,
                    [
                        i
                        for i, v in enumerate(variables)
                        if any(v is w for w in layer.trainable_weights)
                    ],
                )
                for layer in self.model.layers
                if layer.trainable_weights
            ]

    def _measure(self) -> tuple[list[Any], dict[str, float]]:
        """The ReLU outputs on the probe batch and each layer's gradient norm."""
        if keras.backend.backend() != "tensorflow":
            return _as_list(self._probe(self.x_probe, training=False))[:-1], {}
        if self._step is None:
            self._step = self._compiled_step()
        outputs, norms = self._step(self._x, self._y)
        names = [name for name, _ in self._owners]
        return list(outputs), {name: float(n) for name, n in zip(names, norms, strict=True)}

    def _compiled_step(self) -> Any:
        """One traced function for the forward and backward pass: tracing once (a few tenths
        of a second) then about a millisecond an epoch, where eager Keras took 5-30 ms."""
        import tensorflow as tf

        probe, model, owners = self._probe, self.model, self._owners
        variables = model.trainable_variables
        self._x, self._y = tf.constant(self.x_probe), tf.constant(self.y_probe)

        @tf.function
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                outputs = _as_list(probe(x, training=False))
                loss = model.compute_loss(x=x, y=y, y_pred=outputs[-1])
            gradients = tape.gradient(loss, variables)
            norms = []
            for _, indices in owners:
                squares = [tf.reduce_sum(tf.square(gradients[i])) for i in indices if gradients[i] is not None]  # fmt: skip
                norms.append(tf.sqrt(tf.add_n(squares)) if squares else tf.constant(0.0))
            return outputs[:-1], norms

        return step

    def _epoch(self, epoch: int) -> None:
        self.epochs.append(epoch + 1)
        for layer in self.model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is None:
                continue
            values = np.asarray(keras.ops.convert_to_numpy(kernel), dtype="float64").ravel()
            counts, edges = np.histogram(values, bins=BINS)
            entry = self.histograms.setdefault(layer.name, {"low": [], "high": [], "counts": []})
            entry["low"].append(float(edges[0]))
            entry["high"].append(float(edges[-1]))
            entry["counts"].append(counts.tolist())
        relu_outputs, norms = self._measure()
        for layer, output in zip(self._relu, relu_outputs, strict=True):
            array = np.asarray(keras.ops.convert_to_numpy(output))
            per_unit = array.reshape(-1, array.shape[-1]).max(axis=0)  # over examples and positions
            self.dead.setdefault(layer.name, []).append(float(np.mean(per_unit <= 0)))
        for name, norm in norms.items():
            self.gradients.setdefault(name, []).append(norm)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        with self._timed():
            arrays, conv, maps = self._pictures()
        self._write(arrays, conv, maps)

    def _pictures(self) -> tuple[dict[str, np.ndarray], list[Any], list[str]]:
        arrays: dict[str, np.ndarray] = {}
        conv = [layer for layer in self.model.layers if _is_conv(layer)]
        maps: list[str] = []
        if conv:
            kernel = conv[0].depthwise_kernel if hasattr(conv[0], "depthwise_kernel") else conv[0].kernel  # fmt: skip
            arrays["filters"] = np.asarray(keras.ops.convert_to_numpy(kernel))
            if self.picture is not None:
                probe = keras.Model(self.model.inputs[0], [layer.output for layer in conv])
                outputs = _as_list(probe(self.picture[None], training=False))  # once: no tracing
                arrays["picture"] = np.asarray(self.picture)
                for index, (layer, output) in enumerate(zip(conv, outputs, strict=True)):
                    arrays[f"maps_{index}"] = np.asarray(output)[0][..., :MAPS_PER_LAYER]
                    maps.append(layer.name)
        return arrays, conv, maps

    def _write(self, arrays: dict[str, np.ndarray], conv: list[Any], maps: list[str]) -> None:
        write_json(
            self.run.file(INTERNALS),
            {
                "probe_rows": len(self.x_probe),
                "seconds": round(self.seconds, 4),  # spent recording, all epochs together
                "epochs": self.epochs,
                "histograms": self.histograms,
                "dead_relu": self.dead,
                "gradient_norms": self.gradients,
                "gradients_recorded": keras.backend.backend() == "tensorflow",
                "filters_of": conv[0].name if conv else None,
                "feature_maps_of": maps,
            },
        )
        if arrays:
            write_npz(self.run.file(INTERNALS_PICTURES), **arrays)
