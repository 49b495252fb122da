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


@pytest.mark.slow
def test_predictions_run_several_batches_a_call_and_leave_the_model_as_compiled() -> None:
    """A long prediction runs PREDICT_STEPS_PER_CALL batches per model call over its whole
    calls and the rest one by one: the same outputs as ``model.predict``; each function is
    traced once and kept for the next call (a chunk of ``dltool predict``); the model keeps
    what it was compiled with, so that ``fit`` still counts every batch."""
    import keras

    from dltool import pipelines

    batch_size = 4
    rows = (
        pipelines.PREDICT_STEPS_THRESHOLD + 3
    ) * batch_size + 3  # 3 batches and a partial one left
    x = np.random.default_rng(0).normal(size=(rows, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    expected = model.predict(x, batch_size=batch_size, verbose=0)
    own = model.predict_function

    assert np.array_equal(pipelines.predict_array(model, x, batch_size), expected)
    kept = dict(model.__dict__[pipelines.PREDICT_FUNCTIONS])
    assert list(kept) == [(pipelines.PREDICT_STEPS_PER_CALL, model.jit_compile, model.run_eagerly)]
    (batched,) = kept.values()
    assert batched is not own
    assert batched.experimental_get_tracing_count() == 1  # every call the same shapes
    assert (model.steps_per_execution, model.predict_function) == (1, own)
    same_batches = slice(
        0, len(x) // batch_size * batch_size - batch_size
    )  # as above, batch by batch
    assert np.array_equal(
        pipelines.predict_array(model, x[same_batches], batch_size), expected[same_batches]
    )
    assert batched.experimental_get_tracing_count() == 1  # kept, not traced again

    few = pipelines.predict_array(
        model, x[:8], batch_size
    )  # 2 batches: one per call, the model's own
    assert np.array_equal(few, expected[:8])
    assert model.predict_function is own

    model.fit(x, (x[:, 0] > 0).astype("int32"), batch_size=batch_size, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == pipelines.PREDICT_STEPS_THRESHOLD + 4


@pytest.mark.slow
def test_a_model_compiled_with_several_steps_predicts_partial_calls_one_batch_at_a_time() -> None:
    """A model trained with 32 batches per call: its whole calls run as compiled, the rest
    one batch per call, so that no chunk traces a shorter call again."""
    import keras

    from dltool.pipelines import PREDICT_FUNCTIONS, predict_array

    x = np.random.default_rng(1).normal(size=(40 * 4 + 1, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=32)
    expected = model.predict(x[: 32 * 4], batch_size=4, verbose=0)
    compiled = model.predict_function
    tail = predict_array(model, x, 4)[32 * 4 :]
    assert np.array_equal(predict_array(model, x, 4)[: 32 * 4], expected)
    assert compiled.experimental_get_tracing_count() == 1  # whole calls only
    assert [key[0] for key in model.__dict__[PREDICT_FUNCTIONS]] == [1]
    assert model.steps_per_execution == 32
    assert np.allclose(tail, np.asarray(model(x[32 * 4 :])), atol=1e-6)
