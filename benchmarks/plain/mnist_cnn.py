"""configs/mnist_cnn.yaml as a plain Keras script: keras.io's mnist_convnet, as a user writes it.

Same model, optimizer (adam), batch size (128), validation split (the last 10%, as Keras'
``validation_split`` takes it) and seed as dltool's config. The images come from
``$KERAS_HOME/datasets/mnist.npz`` read with ``np.load``: ``keras.datasets.mnist.load_data``
checks the file's hash and would try to download again the synthetic copy
benchmarks/cnn_speed.py writes (there is no network here).

    python benchmarks/plain/mnist_cnn.py [EPOCHS]

Besides the phases (see phases.py) the JSON line has ``epoch_seconds``: each epoch's wall
seconds from ``on_epoch_begin`` to ``on_epoch_end``, validation pass included, timed as
dltool times its history.csv ``duration_s``.
"""

import json
import os
import sys
import time
from pathlib import Path

from phases import Phases

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 15  # keras.io trains 15

phase = Phases()
with phase("import"):
    import keras
    import numpy as np

with phase("data"):
    keras.utils.set_random_seed(1)
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    with np.load(home / "datasets" / "mnist.npz") as archive:
        x_train, y_train = archive["x_train"], archive["y_train"]
        x_test, y_test = archive["x_test"], archive["y_test"]
    # keras.io: scale to [0, 1], add the channel axis, one-hot labels
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)

with phase("build"):
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])


class EpochTimes(keras.callbacks.Callback):
    """Wall seconds of each epoch, validation included (as dltool's history.csv)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(round(time.perf_counter() - self._started, 4))


epoch_times = EpochTimes()
with phase("fit"):
    history = model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=EPOCHS,
        validation_split=0.1,
        callbacks=[epoch_times],
        verbose=0,
    )

with phase("evaluate"):
    model.evaluate(x_test, y_test, verbose=0)

print(
    json.dumps({
        "seconds": phase.seconds,
        "epochs": len(history.history["loss"]),
        "train_examples": len(x_train) - int(len(x_train) * 0.1),  # Keras' split arithmetic
        "epoch_seconds": epoch_times.seconds,
        "val_accuracy": history.history["val_accuracy"][-1],
    })
)  # fmt: skip
