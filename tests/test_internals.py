"""training.record_internals' callback, called on small models directly (no fit): every kind of
net gets its files, whatever layers it has."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dltool.backend import import_keras
from dltool.rundir import INTERNALS, INTERNALS_PICTURES, RunDir

keras = import_keras()

from dltool.internals import RecordInternals  # noqa: E402


def _dense(activation: str) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation=activation),
            keras.layers.Dense(8, activation=activation),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


def _cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


@pytest.mark.parametrize(
    ("build", "loss", "relu", "pictures"),
    [
        pytest.param(lambda: _dense("sigmoid"), "binary_crossentropy", [], False, id="no-relu"),
        pytest.param(
            lambda: _dense("relu"), "binary_crossentropy", ["dense", "dense_1"], False, id="relu"
        ),
        pytest.param(
            _cnn, "sparse_categorical_crossentropy", ["conv2d", "conv2d_1"], True, id="cnn"
        ),
    ],
)
def test_every_kind_of_net_gets_its_internals(tmp_path: Path, build, loss, relu, pictures) -> None:  # type: ignore[no-untyped-def]
    keras.backend.clear_session()
    model = build()
    model.compile(optimizer="sgd", loss=loss)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, *model.input_shape[1:])).astype("float32")
    y = (rng.uniform(size=(100, 1)) > 0.5).astype("float32")
    callback = RecordInternals(RunDir(tmp_path), x, y, x[0])
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(3):
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    recorded = json.loads((tmp_path / INTERNALS).read_text(encoding="utf-8"))
    assert recorded["epochs"] == [1, 2, 3]
    assert recorded["probe_rows"] == 64
    assert recorded["seconds"] > 0  # what recording cost
    assert list(recorded["dead_relu"]) == relu
    assert set(recorded["gradient_norms"]) == {layer.name for layer in model.layers if layer.trainable_weights}  # fmt: skip
    assert all(len(v) == 3 and min(v) > 0 for v in recorded["gradient_norms"].values())
    assert (tmp_path / INTERNALS_PICTURES).is_file() == pictures
    if pictures:
        with np.load(tmp_path / INTERNALS_PICTURES) as arrays:
            assert arrays["filters"].shape == (3, 3, 1, 3)
            assert arrays["maps_0"].shape == (6, 6, 3)
            assert arrays["maps_1"].shape == (4, 4, 2)
