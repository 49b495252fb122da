"""Input pipelines: arrays or Rows (read from disk) -> ``tf.data`` batches for training,
evaluation and prediction.

Keras' own wrapping of numpy arrays uses AUTOTUNE prefetch, which on small CPU
machines often stalls ~1 s with the CPU idle (see KERAS-NOTES): every pipeline
here prefetches a fixed 2 batches with autotune off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dltool.backend import import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import tensorflow``

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from dltool.data.rows import Rows  # noqa: E402


def make_pipeline(
    x: np.ndarray | Rows, y: np.ndarray | None, batch_size: int, every_row: bool = False
) -> tf.data.Dataset:
    """An evaluation (or, with ``y=None``, prediction) pipeline: in order, fixed prefetch, autotune off.

    Keras' own wrapping of numpy arrays uses AUTOTUNE prefetch, which on small CPU
    machines often stalls ~1 s with the CPU idle (see KERAS-NOTES). Batches are cut
    from the arrays whole, not row by row and re-batched: 1.5x faster on 1M rows.
    :class:`Rows` are read a batch at a time; an example that cannot be read (an image
    that fails to decode) is left out of its batch, so that it counts in no loss,
    metric or statistic, unless ``every_row`` (predictions, one per row, read afterwards
    with :func:`dltool.data.rows.usable`).
    """
    if isinstance(x, Rows):
        return _fast(_read(x, y, tf.data.Dataset.range(len(x)).batch(batch_size), every_row))
    arrays = [np.asarray(x, dtype="float32"), *([] if y is None else [np.asarray(y)])]
    full = len(arrays[0]) // batch_size * batch_size  # rows in whole batches

    def element(parts: list[np.ndarray]) -> Any:
        return parts[0] if y is None else tuple(parts)

    data = tf.data.Dataset.from_tensor_slices(
        element([a[:full].reshape(-1, batch_size, *a.shape[1:]) for a in arrays])
    )
    if full < len(arrays[0]):  # the last, partial batch
        data = data.concatenate(tf.data.Dataset.from_tensors(element([a[full:] for a in arrays])))
    return _fast(data)


def _read(
    rows: Rows, y: np.ndarray | None, positions: tf.data.Dataset, every_row: bool = False
) -> tf.data.Dataset:
    """Batches of ``rows`` (and labels) at each batch of positions, read from disk; rows that
    cannot be read are left out of their batch (kept as zeros with ``every_row``)."""
    shape = tuple(rows.shape[1:])
    labels = None if y is None else tf.constant(np.asarray(y))
    stored = tf.as_dtype(rows.reader.dtype)
    drop = rows.reader.fallible and not every_row

    def load(where: tf.Tensor) -> Any:
        x, usable = tf.numpy_function(rows.read_stored, [where], [stored, tf.bool], stateful=False)
        x = tf.cast(tf.ensure_shape(x, (None, *shape)), tf.float32)
        usable = tf.ensure_shape(usable, (None,))
        if drop:
            x, where = tf.boolean_mask(x, usable), tf.boolean_mask(where, usable)
        return x if labels is None else (x, tf.gather(labels, where))

    return positions.map(load)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Batches in one epoch of ``rows`` rows, the last one maybe partial."""
    return math.ceil(rows / batch_size)


class TrainPipeline:
    """Training batches, one epoch per pass, in an order that depends only on (seed, epoch).

    Each epoch draws a permutation of the row positions (``stateless_shuffle``, seeded
    by seed and epoch: one int64 per row, not a shuffle buffer holding every row) and
    gathers each batch's rows: from memory for an array, from disk for :class:`Rows`.
    Both give the same batches for the same seed and epoch.

    Keras iterates the dataset afresh each epoch. It must not be fitted with
    ``steps_per_epoch``: Keras then keeps one iterator across epochs and asks for
    ``steps_per_execution`` batches per call, so with 400 batches an epoch and 32 per
    call each epoch took 416 batches (16 of the next epoch's), the last epoch ran out
    of data ("Your input ran out of data") and, past 25 epochs, the data restarted.
    Without it the dataset's known length ends the epoch, and the last call runs the
    batches that are left. Fit with :meth:`callback`, which tells the dataset the
    epoch about to start, so a resumed run sees exactly the batches the
    uninterrupted run would have seen.
    """

    def __init__(
        self, x: np.ndarray | Rows, y: np.ndarray, batch_size: int, seed: int, first_epoch: int
    ) -> None:
        count = len(x)
        self.steps = steps_per_epoch(count, batch_size)
        # Read when an epoch's iterator starts, after on_epoch_begin has set it.
        self.epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)

        def one_epoch(_: tf.Tensor) -> tf.data.Dataset:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count, dtype=tf.int64),
                seed=tf.stack([tf.constant(seed, tf.int64), self.epoch.read_value()]),
            )
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        positions = tf.data.Dataset.range(1).flat_map(one_epoch)
        if isinstance(x, Rows):
            data = _read(x, y, positions)
        else:
            features = tf.constant(np.asarray(x, dtype="float32"))
            labels = tf.constant(np.asarray(y))
            data = positions.map(lambda where: (tf.gather(features, where), tf.gather(labels, where)))  # fmt: skip
        self.dataset = _fast(data.apply(tf.data.experimental.assert_cardinality(self.steps)))

    def callback(self) -> keras.callbacks.Callback:
        """The Keras callback that sets the epoch before its batches are drawn."""
        return keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs=None: self.epoch.assign(epoch)
        )


def _fast(data: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(2).with_options(options)


AUTO_STEPS_THRESHOLD = 256  # batches per epoch from which several steps per call pay off
AUTO_STEPS_PER_EXECUTION = 32  # measured 0.66x wall time on a 100k-row MLP; no gain at 32 batches
# ... and only when a batch of inputs is small: predict and evaluate run the batches of one call
# at once (no step waits for another), so 32 batches of 64 128x128 RGB images held 32 x 12.6 MB
# of pixels and their activations together: a 25,000-image run peaked at 1.8 GB instead of 1.0.
AUTO_STEPS_MAX_BATCH_BYTES = 4_000_000


# Prediction: 8 batches per model call once a call has 128 or more. Keras traces a function
# per setting (unrolled: 8 copies of the model, 0.15 s for the student model; 32 copies took
# 0.6 s) and each call then saves ~0.9 ms per batch: 1,000,000 rows in 200,000-row chunks
# took 1.5 s one batch per call, 0.77 s with 8 (trace included), 0.93 s with 16, 1.05 s with 32.
PREDICT_STEPS_PER_CALL = 8
PREDICT_STEPS_THRESHOLD = 128


def _small(batch_size: int, example_shape: Sequence[int]) -> bool:
    return batch_size * 4 * math.prod(example_shape) <= AUTO_STEPS_MAX_BATCH_BYTES  # float32


def auto_steps_per_execution(batches: int, batch_size: int, example_shape: Sequence[int]) -> int:
    """Training batches per model call when the config leaves it to dltool: 32 for a long
    epoch of small batches, else 1."""
    long = batches >= AUTO_STEPS_THRESHOLD
    return AUTO_STEPS_PER_EXECUTION if long and _small(batch_size, example_shape) else 1


def predict_array(model: Any, x: np.ndarray | Rows, batch_size: int) -> np.ndarray:
    """``model.predict`` of ``x`` (not empty), fed by the fixed-prefetch tf.data pipeline,
    several batches per model call where that pays.

    Keras' own wrapping of numpy arrays (AUTOTUNE prefetch) stalls on small CPU
    machines: 20 chunks of 50,000 rows took 2.94 s that way and 1.14 s through a
    fixed-prefetch pipeline. Each model call costs a Python round trip: see
    PREDICT_STEPS_PER_CALL. Only rows in whole calls of whole batches go through a
    several-batch function, so every call of it has the same shapes and it is traced once
    (a shorter last call or a partial batch traced it again, which cost more than the
    batching saved); the rest go one batch per call. The same outputs either way.
    """
    batches = len(x) // batch_size
    wanted = PREDICT_STEPS_PER_CALL if batches >= PREDICT_STEPS_THRESHOLD and _small(batch_size, x.shape[1:]) else 1  # fmt: skip
    per_call = max(model.steps_per_execution, wanted)
    whole = batches // per_call * per_call * batch_size  # rows in whole calls
    parts = [_predict(model, x[:whole], batch_size, per_call)] if whole else []
    if whole < len(x):
        parts.append(_predict(model, x[whole:], batch_size, 1))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _predict(model: Any, x: np.ndarray | Rows, batch_size: int, per_call: int) -> np.ndarray:
    """``model.predict`` of ``x``, ``per_call`` batches per model call.

    The function Keras makes for a setting other than the model's own is kept on the model
    (for its next call: predict's next chunk), and the model's own setting and function are
    put back afterwards, so that a later ``fit`` or ``predict`` is unchanged. Not for two
    threads predicting with one model at once (the setting is the model's, for the call).
    """
    data = make_pipeline(x, None, batch_size, every_row=True)
    compiled, own = model.steps_per_execution, model.predict_function
    if per_call == compiled:
        return np.asarray(model.predict(data, verbose=0))
    # In the model's __dict__, not through Keras' attribute tracking; the functions refer to
    # the model, so they go with it. Keyed by what Keras builds them from, so that a model
    # compiled again (jit_compile, run_eagerly) gets new ones.
    kept = model.__dict__.setdefault(PREDICT_FUNCTIONS, {})
    key = (per_call, model.jit_compile, model.run_eagerly)
    model.steps_per_execution, model.predict_function = per_call, kept.get(key)
    try:
        return np.asarray(model.predict(data, verbose=0))
    finally:
        kept[key] = model.predict_function
        model.steps_per_execution, model.predict_function = compiled, own


PREDICT_FUNCTIONS = "_dltool_predict_functions"  # (batches per call, jit, eager) -> Keras' function
