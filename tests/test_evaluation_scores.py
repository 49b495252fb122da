"""A run's final metrics come from predictions (StreamingScores): they must equal
``model.evaluate`` on the same rows, for every task, with regularization, in chunks."""

from __future__ import annotations

import numpy as np
import pytest

from dltool.evaluation import StreamingScores


@pytest.mark.parametrize(
    ("task", "outputs", "loss", "metrics"),
    [
        ("binary", 1, "binary_crossentropy", ["accuracy", "auc", "precision"]),
        ("multiclass", 3, "sparse_categorical_crossentropy", ["accuracy"]),
        ("multiclass", 3, "categorical_crossentropy", ["accuracy", "top_k_categorical_accuracy"]),
        ("regression", 1, "mse", ["mae"]),
    ],
)
def test_scores_from_predictions_equal_model_evaluate(
    task: str, outputs: int, loss: str, metrics: list[str]
) -> None:
    import keras

    keras.utils.set_random_seed(0)
    activation = {"binary": "sigmoid", "multiclass": "softmax", "regression": None}[task]
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(5, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
        keras.layers.Dense(outputs, activation=activation),
    ])  # fmt: skip
    model.compile(optimizer="adam", loss=loss, metrics=metrics)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(103, 4)).astype("float32")  # not a whole number of batches
    if task == "regression":
        y = rng.normal(size=103).astype("float32")
        labels = y
    else:
        y = rng.integers(0, max(outputs, 2), size=103)
        one_hot = loss == "categorical_crossentropy"
        labels = keras.utils.to_categorical(y, outputs) if one_hot else y
    expected = model.evaluate(x, labels, batch_size=32, verbose=0, return_dict=True)

    names = [str(i) for i in range(max(outputs, 2))]
    scores = StreamingScores(model, task, names, loss == "categorical_crossentropy")
    raw = model.predict(x, batch_size=32, verbose=0)
    for part in (slice(0, 50), slice(50, 103)):  # two chunks, as a streamed split gives them
        scores.add(raw[part], y[part])
    got = scores.metrics()

    assert sorted(got) == sorted(expected)  # the same names (dltool puts the loss first)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
