"""Input pipelines: the per-epoch shuffle is seeded, differs between epochs, and resumes exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dltool.pipelines import TrainPipeline, make_pipeline

ROWS = 64


def _epoch_orders(seed: int, first_epoch: int, epochs: int) -> list[list[int]]:
    """Row order of each epoch ``first_epoch..epochs-1`` (one batch holds a whole epoch).

    The global seed is set first, as training sets it: the per-epoch seed must still differ.
    """
    import keras

    keras.utils.set_random_seed(seed)
    x = np.arange(ROWS, dtype="float32").reshape(-1, 1)
    y = np.arange(ROWS)
    pipeline = TrainPipeline(x, y, ROWS, seed, first_epoch)
    callback = pipeline.callback()  # as fit calls it: the epoch, then a fresh pass
    orders = []
    for epoch in range(first_epoch, epochs):
        callback.on_epoch_begin(epoch)
        ((features, labels),) = pipeline.dataset.as_numpy_iterator()
        assert (features[:, 0] == labels).all()  # rows stay whole
        orders.append(labels.tolist())
    return orders


def test_each_epoch_has_its_own_order_and_sees_every_row() -> None:
    orders = _epoch_orders(seed=7, first_epoch=0, epochs=4)
    assert len(orders) == 4
    assert all(sorted(order) == list(range(ROWS)) for order in orders)
    assert len({tuple(order) for order in orders}) == 4  # no two epochs alike
    assert orders[0] != list(range(ROWS))  # shuffled


def test_a_resumed_epoch_has_exactly_the_order_it_would_have_had() -> None:
    whole = _epoch_orders(seed=7, first_epoch=0, epochs=5)
    assert _epoch_orders(seed=7, first_epoch=3, epochs=5) == whole[3:]
    assert _epoch_orders(seed=7, first_epoch=0, epochs=5) == whole  # the same again
    assert _epoch_orders(seed=8, first_epoch=0, epochs=5)[0] != whole[0]  # the seed matters


def test_evaluation_pipeline_keeps_order_and_the_last_partial_batch() -> None:
    x = np.arange(10, dtype="float32").reshape(-1, 1)
    batches = list(make_pipeline(x, np.arange(10), 4).as_numpy_iterator())
    assert [labels.tolist() for _, labels in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.slow
def test_every_epoch_trains_every_batch_when_calls_do_not_divide_it() -> None:
    """103 batches an epoch, 32 per call: Keras used to take 128 per epoch and run out."""
    import keras

    rows, batch_size, epochs = 103 * 4 - 1, 4, 3  # the last batch is partial
    x = np.random.default_rng(0).normal(size=(rows, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", steps_per_execution=32)
    pipeline = TrainPipeline(x, y, batch_size, seed=1, first_epoch=0)
    assert pipeline.steps == 103
    counted: list[int] = []
    after_each_epoch = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs=None: counted.append(int(model.optimizer.iterations))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Your input ran out of data" would fail the test
        model.fit(pipeline.dataset, epochs=epochs, shuffle=False, callbacks=[pipeline.callback(), after_each_epoch], verbose=0)  # fmt: skip
    assert counted == [103, 206, 309]
