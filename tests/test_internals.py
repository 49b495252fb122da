"""training.record_internals' callback on small models trained with Keras' own fit: every kind
of net gets its files, whatever layers it has, and the gradient norms are the ones training
computed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


@pytest.mark.slow
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
    callback = RecordInternals(RunDir(tmp_path), x, x[0])
    model.fit(x, y, epochs=3, batch_size=40, callbacks=[callback], verbose=0)
    recorded = json.loads((tmp_path / INTERNALS).read_text(encoding="utf-8"))
    assert recorded["epochs"] == [1, 2, 3]
    assert recorded["measured_in"] == "training steps"  # TensorFlow: no probe batch
    assert recorded["seconds"] > 0  # what recording cost
    assert list(recorded["dead_relu"]) == relu
    assert all(len(v) == 3 for v in recorded["dead_relu"].values())
    assert recorded["gradients_recorded"] is True
    assert set(recorded["gradient_norms"]) == {layer.name for layer in model.layers if layer.trainable_weights}  # fmt: skip
    assert all(len(v) == 3 and min(v) > 0 for v in recorded["gradient_norms"].values())
    # the wrappers are gone after training, and a later fit runs without them
    assert "apply_gradients" not in vars(model.optimizer)
    assert "train_step" not in vars(model)
    assert not any("call" in vars(layer) for layer in model.layers)
    model.fit(x, y, epochs=1, batch_size=40, verbose=0)
    assert (tmp_path / INTERNALS_PICTURES).is_file() == pictures
    if pictures:
        with np.load(tmp_path / INTERNALS_PICTURES) as arrays:
            assert arrays["filters"].shape == (3, 3, 1, 3)
            assert arrays["maps_0"].shape == (6, 6, 3)
            assert arrays["maps_1"].shape == (4, 4, 2)


@pytest.mark.slow
def test_gradient_norms_are_the_root_mean_square_of_the_steps_training_took(tmp_path: Path) -> None:
    """Two steps of plain SGD on fixed halves: the recorded norm of each layer is the root mean
    square of the two steps' gradient norms, computed here on their own from the same weights."""
    import tensorflow as tf

    keras.backend.clear_session()
    model = _dense("relu")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 3)).astype("float32")
    y = (rng.uniform(size=(20, 1)) > 0.5).astype("float32")
    expected: dict[str, list[float]] = {layer.name: [] for layer in model.layers}
    weights = model.get_weights()
    for half in (slice(0, 10), slice(10, 20)):  # the steps fit takes, replayed by hand
        with tf.GradientTape() as tape:
            loss = keras.losses.binary_crossentropy(y[half], model(x[half], training=True))
            loss = tf.reduce_mean(loss)
        gradients = tape.gradient(loss, model.trainable_variables)
        for layer in model.layers:
            owned = [g for g, v in zip(gradients, model.trainable_variables, strict=True) if any(v is w for w in layer.trainable_weights)]  # fmt: skip
            expected[layer.name].append(float(tf.sqrt(sum(tf.reduce_sum(g * g) for g in owned))))
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    model.set_weights(weights)
    model.optimizer.iterations.assign(0)
    callback = RecordInternals(RunDir(tmp_path), x, None)
    model.fit(x, y, epochs=1, batch_size=10, shuffle=False, callbacks=[callback], verbose=0)
    recorded = json.loads((tmp_path / INTERNALS).read_text(encoding="utf-8"))["gradient_norms"]
    for name, norms in expected.items():
        assert recorded[name] == [pytest.approx(np.sqrt((norms[0] ** 2 + norms[1] ** 2) / 2), rel=1e-5)], name  # fmt: skip


def _fit_recorded(tmp_path: Path, model: Any, x: np.ndarray, y: np.ndarray, **fit: Any) -> dict[str, Any]:  # fmt: skip
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, callbacks=[RecordInternals(RunDir(tmp_path), x, None)], verbose=0, **fit)
    return dict(json.loads((tmp_path / INTERNALS).read_text(encoding="utf-8")))


@pytest.mark.slow
def test_dead_units_are_those_that_output_zero_for_every_training_example(tmp_path: Path) -> None:
    """Half of a layer's units pushed far below zero output 0 for every example: exactly that
    half is dead, every epoch; the other half, always positive, is not. The next layer is all
    dead, so nothing flows back to the first one: its live units still count as live (they
    output values; only their gradients are 0)."""
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    kernel, bias = model.layers[0].get_weights()
    bias[:4], bias[4:] = -100.0, 100.0
    model.layers[0].set_weights([kernel * 0.01, bias])
    kernel, bias = model.layers[1].get_weights()
    model.layers[1].set_weights([kernel * 0.001, bias - 1000.0])  # every unit dead
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(60, 3)).astype("float32")
    y = rng.integers(0, 2, size=60)
    recorded = _fit_recorded(tmp_path, model, x, y, epochs=2, batch_size=20)
    assert recorded["dead_relu"] == {"dense": [0.5, 0.5], "dense_1": [1.0, 1.0]}
    assert recorded["gradient_norms"]["dense"] == [0.0, 0.0]  # nothing flowed back to it


@pytest.mark.slow
def test_relu_layers_without_a_bias_and_activation_layers_are_measured_too(tmp_path: Path) -> None:
    """A conv layer without a bias and a separate Activation layer are measured like the rest,
    in the training steps; the evaluation after fit does not count."""
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, use_bias=False, activation="relu"),
            keras.layers.Conv2D(2, 3),
            keras.layers.Activation("relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=40)
    recorded = _fit_recorded(tmp_path, model, x, y, epochs=2, batch_size=20, validation_data=(x, y))  # fmt: skip
    assert recorded["measured_in"] == "training steps"
    assert list(recorded["dead_relu"]) == ["conv2d", "activation", "dense"]
    assert all(len(v) == 2 and all(0 <= f <= 1 for f in v) for v in recorded["dead_relu"].values())


@pytest.mark.slow
def test_a_fit_cut_short_is_left_without_the_wrappers_by_detach(tmp_path: Path) -> None:
    """Ctrl-C ends fit without on_train_end: training calls detach itself (training.py)."""

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise KeyboardInterrupt

    keras.backend.clear_session()
    model = _dense("relu")
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = np.random.default_rng(4).normal(size=(20, 3)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    recorder = RecordInternals(RunDir(tmp_path), x, None)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, callbacks=[Interrupt(), recorder], verbose=0)
    assert "train_step" in vars(model)  # on_train_end did not run
    recorder.detach()
    recorder.detach()  # once is enough; twice is harmless
    assert "train_step" not in vars(model)
    assert "apply_gradients" not in vars(model.optimizer)
    assert not any("call" in vars(layer) for layer in model.layers)
    assert not (tmp_path / INTERNALS).exists()  # an interrupted run has none
