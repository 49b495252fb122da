"""The script a user writes today for an image folder: image_dataset_from_directory + fit.

Usage: python image_folder.py FOLDER SEED. Trains the CNN of benchmarks/data_scale.py
for 1 epoch (batch 64) on 80% of the images, evaluates and predicts the other 20%
(Keras' own seeded split), and saves the model: the work `dltool train` does on the
same folder. Images are decoded by TensorFlow in the input pipeline (streamed).
"""

import sys
import tempfile
from pathlib import Path

from phases import Phases

phase = Phases()
with phase("import"):
    import keras

folder, seed = Path(sys.argv[1]), int(sys.argv[2])
with phase("data"):
    keras.utils.set_random_seed(seed)
    train, test = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=seed, image_size=(128, 128), batch_size=64
    )

with phase("build"):
    model = keras.Sequential([
        keras.Input((128, 128, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(4),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(4),
        keras.layers.Flatten(),
        keras.layers.Dense(2, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

with phase("fit"):
    model.fit(train, epochs=1, verbose=0)

with phase("evaluate"):
    model.evaluate(test, verbose=0)
    model.predict(test, verbose=0)

with phase("save"), tempfile.TemporaryDirectory() as out:
    model.save(Path(out) / "model.keras")

phase.report(epochs=1, train_examples=int(train.cardinality()) * 64)
