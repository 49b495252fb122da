"""Input pipelines: the per-epoch shuffle is seeded, differs between epochs, and resumes exactly."""

from __future__ import annotations

import numpy as np

from dltool.pipelines import make_pipeline, make_train_pipeline

ROWS = 64


def _epoch_orders(seed: int, first_epoch: int, epochs: int) -> list[list[int]]:
    """Row order of each epoch ``first_epoch..epochs-1`` (one batch holds a whole epoch).

    The global seed is set first, as training sets it: the per-epoch seed must still differ.
    """
    import keras

    keras.utils.set_random_seed(seed)
    x = np.arange(ROWS, dtype="float32").reshape(-1, 1)
    y = np.arange(ROWS)
    batches = make_train_pipeline(x, y, ROWS, seed, first_epoch, epochs)
    orders = []
    for features, labels in batches.as_numpy_iterator():
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
