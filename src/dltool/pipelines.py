"""Input pipelines: numpy arrays -> ``tf.data`` batches for training, evaluation and prediction.

Keras' own wrapping of numpy arrays uses AUTOTUNE prefetch, which on small CPU
machines often stalls ~1 s with the CPU idle (see KERAS-NOTES): every pipeline
here prefetches a fixed 2 batches with autotune off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dltool.backend import import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import tensorflow``

import tensorflow as tf  # noqa: E402


def make_pipeline(x: np.ndarray, y: np.ndarray | None, batch_size: int) -> tf.data.Dataset:
    """An evaluation (or, with ``y=None``, prediction) pipeline: in order, fixed prefetch, autotune off.

    Keras' own wrapping of numpy arrays uses AUTOTUNE prefetch, which on small CPU
    machines often stalls ~1 s with the CPU idle (see KERAS-NOTES). Batches are cut
    from the arrays whole, not row by row and re-batched: 1.5x faster on 1M rows.
    """
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


def make_train_pipeline(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, epochs: int
) -> tf.data.Dataset:
    """Training batches for epochs ``first_epoch..epochs-1``, one seeded shuffle per epoch.

    Epoch e's order depends only on (seed, e), so a resumed run sees exactly the
    batches the uninterrupted run would have seen. Fit it with ``steps_per_epoch``.
    """
    rows = tf.data.Dataset.from_tensor_slices((np.asarray(x, dtype="float32"), y))
    count = len(x)

    def epoch(number: tf.Tensor) -> tf.data.Dataset:
        order_seed = tf.constant(seed, tf.int64) * 1_000_003 + number
        return rows.shuffle(count, seed=order_seed, reshuffle_each_iteration=False).batch(
            batch_size
        )

    return _fast(tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch))


def _fast(data: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(2).with_options(options)


def predict_array(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict`` of ``x`` (not empty), fed by the fixed-prefetch tf.data pipeline.

    Keras' own wrapping of numpy arrays (AUTOTUNE prefetch) stalls on small CPU
    machines: 20 chunks of 50,000 rows took 2.94 s that way and 1.14 s through a
    fixed-prefetch pipeline; see benchmarks/results-predict.md for today's figures.
    """
    return np.asarray(model.predict(make_pipeline(x, None, batch_size), verbose=0))
