"""Inside the model while it trains (``training.record_internals``), for the report.

Per epoch:

- a histogram of each layer's kernel (its weights without the bias), after the epoch;
- for each layer with a ReLU activation, the fraction of its units that are dead (a conv
  layer's unit is a filter): on TensorFlow, the units that output 0 for every training example
  of the epoch, read in training's own forward pass (see :class:`TrainingSteps`); on another
  backend, the units that output 0, at every position, for every example of one fixed probe
  batch of training data (at most 64 rows) after the epoch;
- the norm of each layer's gradient of the loss, as a root mean square over the epoch's
  training steps: the gradients training computed anyway, measured inside its compiled step
  (TensorFlow backend only), so recording adds no second pass over anything.

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

PROBE_ROWS = 64  # not on TensorFlow: examples whose ReLU outputs are read after each epoch
BINS = 30  # per weight histogram
MAPS_PER_LAYER = 16  # feature maps kept per conv layer (the first channels)


def _as_list(outputs: Any) -> list[Any]:
    """A model's outputs as a list: a model with one output returns it bare."""
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def in_the_step() -> bool:
    """Whether recording happens inside the training step (:class:`TrainingSteps`, TensorFlow);
    otherwise dead units come from a probe batch after each epoch."""
    return keras.backend.backend() == "tensorflow"


def is_relu(layer: Any) -> bool:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "relu"


def _is_conv(layer: Any) -> bool:
    return isinstance(layer, keras.layers.Conv2D | keras.layers.SeparableConv2D)


class TrainingSteps:
    """Gradient norms and dead ReLU units, measured inside training's own compiled step.

    While recording (until :meth:`detach`), this one model's train step, each ReLU layer's
    ``call`` and its optimizer's ``apply_gradients`` (what Keras' TensorFlow train step calls
    with the gradients it computed) are wrapped, and the train function is traced again with
    them. In each training step:

    - each ReLU layer's output gives its largest value per unit over the batch (one
      ``reduce_max``; a conv layer's unit is a filter: over examples and positions). Only the
      training forward pass is measured: the wrappers are idle outside the train step, so
      validation, evaluation and prediction add nothing;
    - each weight's gradient gives its squared norm (``l2_loss``: one operation a weight);
    - those, and 1 for the step, are added to one vector variable in one assignment.

    A unit is dead in an epoch when its largest output over every training example of the
    epoch is 0 (with training's dropout on the layer's inputs). A layer's gradient norm for the
    epoch is the root mean square over its steps: the square root of the mean, over the steps,
    of the sum of its weights' squared norms.

    Under ``training.distribute`` each replica holds only its share of the batch's gradient, so
    the norms are taken of the replicas' sum (one more all-reduce a step, only while
    recording); the variable, made in the model's strategy, sums every replica's copy when
    read (a unit alive on any replica is alive): the same figures as on one device.
    """

    def __init__(self, model: Any, relu: list[Any]) -> None:
        import tensorflow as tf

        layers = [layer for layer in model.layers if layer.trainable_weights]
        self.names = [layer.name for layer in layers]
        weights = [w for layer in layers for w in layer.trainable_weights]
        position = {id(w): i for i, w in enumerate(weights)}
        self.owner = np.array([i for i, layer in enumerate(layers) for _ in layer.trainable_weights])  # fmt: skip
        self.units = [int(layer.output.shape[-1]) for layer in relu]
        with model.distribute_strategy.scope():
            self.totals = tf.Variable(
                tf.zeros(len(weights) + 1 + sum(self.units)),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
            )
        totals, units = self.totals, self.units
        self.model, self.relu = model, relu
        self.optimizer = model.optimizer
        step: dict[str, Any] = {"on": False, "maxima": {}}  # while a train step is traced

        def train_step(data: Any) -> Any:
            step["on"], step["maxima"] = True, {}
            try:
                return original_step(data)
            finally:
                step["on"] = False

        def measured(index: int, original: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                outputs = original(*args, **kwargs)
                if step["on"]:  # the training forward pass only
                    axes = list(range(len(outputs.shape) - 1))
                    step["maxima"][index] = tf.cast(tf.reduce_max(outputs, axis=axes), "float32")
                return outputs

            return call

        def apply_gradients(grads_and_vars: Any) -> Any:
            pairs = list(grads_and_vars)
            gradients = [gradient for gradient, _ in pairs]
            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync > 1:  # this replica's share
                present = [i for i, g in enumerate(gradients) if g is not None]
                summed = replica.all_reduce("sum", [gradients[i] for i in present])
                for i, gradient in zip(present, summed, strict=True):
                    gradients[i] = gradient  # the whole batch's gradient (see the class)
            squares: list[Any] = [tf.zeros(())] * len(weights)
            for gradient, (_, variable) in zip(gradients, pairs, strict=True):
                if gradient is not None and id(variable) in position:
                    squares[position[id(variable)]] = tf.nn.l2_loss(tf.cast(gradient, "float32"))  # fmt: skip
            maxima = [step["maxima"].get(k, tf.zeros(n)) for k, n in enumerate(units)]
            totals.assign_add(tf.concat([tf.stack([*squares, tf.ones(())]), *maxima], axis=0))
            return original_apply(pairs)

        original_step, original_apply = model.train_step, self.optimizer.apply_gradients
        model.train_step = train_step  # these instances only
        self.optimizer.apply_gradients = apply_gradients
        for index, layer in enumerate(relu):
            layer.call = measured(index, layer.call)
        model.make_train_function(force=True)  # traced again, with the wrappers
        self.attached = True

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        """Each layer's gradient norm (root mean square over the steps) and dead fraction
        since the last call (empty if no step ran), and start again."""
        totals = self.totals.numpy().astype("float64")
        self.totals.assign(np.zeros(len(totals), dtype="float32"))
        count = len(self.owner)
        steps = totals[count]
        if not steps:
            return {}, {}
        squares = np.bincount(self.owner, weights=2 * totals[:count], minlength=len(self.names))
        norms = {name: float(np.sqrt(total / steps)) for name, total in zip(self.names, squares, strict=True)}  # fmt: skip
        dead: dict[str, float] = {}
        start = count + 1
        for layer, size in zip(self.relu, self.units, strict=True):
            dead[layer.name] = float(np.mean(totals[start : start + size] <= 0))
            start += size
        return norms, dead

    def detach(self) -> None:
        """The model's own train step, calls and ``apply_gradients`` again (saved models never
        see the wrappers), and a train function without them for a later fit. Once."""
        if not self.attached:
            return
        self.attached = False
        for owner, name in [(self.model, "train_step"), (self.optimizer, "apply_gradients"), *((layer, "call") for layer in self.relu)]:  # fmt: skip
            vars(owner).pop(name, None)
        self.model.make_train_function(force=True)


class RecordInternals(keras.callbacks.Callback):
    """Measures the model after each epoch (see the module); writes its files at the end."""

    def __init__(self, run: RunDir, x_probe: np.ndarray | None, picture: np.ndarray | None) -> None:  # fmt: skip
        """``x_probe``: training examples for :data:`PROBE_ROWS`, needed only where
        :func:`in_the_step` is false (None otherwise)."""
        super().__init__()
        self.run = run
        self.x_probe = x_probe[:PROBE_ROWS] if x_probe is not None else None
        self.picture = picture  # one test example, for the feature maps
        self.epochs: list[int] = []
        self.histograms: dict[str, dict[str, list[Any]]] = {}
        self.dead: dict[str, list[float]] = {}
        self.gradients: dict[str, list[float]] = {}
        self._relu: list[Any] = []
        self._probe: Any = None  # not on TensorFlow: ReLU outputs on the probe batch
        self._steps: TrainingSteps | None = None
        self.seconds = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        with self._timed():
            self._begin()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        with self._timed():
            self._epoch(epoch)

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        """Count the seconds recording takes: internals.json says what it cost this run (all
        but the few operations it adds to each compiled training step)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    def _begin(self) -> None:
        self._relu = [layer for layer in self.model.layers if is_relu(layer)]
        if in_the_step():
            self._steps = TrainingSteps(self.model, self._relu)
        elif self._relu:  # another backend: the probe batch after each epoch, eager
            if self.x_probe is None:
                raise ValueError("record_internals needs probe rows on this backend")
            self._probe = keras.Model(self.model.inputs[0], [layer.output for layer in self._relu])

    def _epoch(self, epoch: int) -> None:
        self.epochs.append(epoch + 1)
        for layer in self.model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is None:
                continue
            values = np.asarray(keras.ops.convert_to_numpy(kernel)).ravel()
            counts, edges = np.histogram(values, bins=BINS)
            entry = self.histograms.setdefault(layer.name, {"low": [], "high": [], "counts": []})
            entry["low"].append(float(edges[0]))
            entry["high"].append(float(edges[-1]))
            entry["counts"].append(counts.tolist())
        norms, dead = self._steps.take() if self._steps is not None else ({}, {})
        if self._probe is not None:
            outputs = _as_list(self._probe(self.x_probe, training=False))
            for layer, output in zip(self._relu, outputs, strict=True):
                array = np.asarray(keras.ops.convert_to_numpy(output))
                per_unit = array.reshape(-1, array.shape[-1]).max(axis=0)  # examples, positions
                dead[layer.name] = float(np.mean(per_unit <= 0))
        for layer in self._relu:  # in the model's order
            if layer.name in dead:
                self.dead.setdefault(layer.name, []).append(dead[layer.name])
        for name, norm in norms.items():
            self.gradients.setdefault(name, []).append(norm)

    def detach(self) -> None:
        """Training's own step again (see :meth:`TrainingSteps.detach`): at the end of
        training, and after a fit that an interrupt or an error ended early."""
        if self._steps is not None:
            self._steps.detach()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.detach()
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
        # where the dead units come from: every training example of each epoch, or (not on
        # TensorFlow) the probe batch after each epoch
        if self._steps is not None:
            where: dict[str, Any] = {"measured_in": "training steps"}
        else:
            where = {"probe_rows": len(self.x_probe) if self.x_probe is not None else 0}
        write_json(
            self.run.file(INTERNALS),
            {
                **where,
                "seconds": round(self.seconds, 4),  # spent recording, all epochs together
                "epochs": self.epochs,
                "histograms": self.histograms,
                "dead_relu": self.dead,
                "gradient_norms": self.gradients,
                "gradients_recorded": self._steps is not None,
                "filters_of": conv[0].name if conv else None,
                "feature_maps_of": maps,
            },
        )
        if arrays:
            write_npz(self.run.file(INTERNALS_PICTURES), **arrays)
