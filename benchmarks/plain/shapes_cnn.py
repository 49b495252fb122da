"""configs/shapes_cnn.yaml as a plain Keras script: same images, split, model, epochs, seed.

The images come from dltool's generator (dltool/data/shapes.py: anti-aliased shapes
drawn from signed distances, ~100 lines): rewriting it here would only risk drawing
different pixels. Everything after the arrays is plain Keras. Early stopping is off on
both sides of the benchmark (compare.py runs dltool with the same --set): both train
all 20 epochs.
"""

from phases import Phases

phase = Phases()
with phase("import"):
    import keras
    import numpy as np

with phase("data"):
    from sklearn.model_selection import train_test_split

    from dltool.data.shapes import balanced_labels, draw

    keras.utils.set_random_seed(7)
    generator = np.random.default_rng(7)
    kinds = ["circle", "square", "triangle"]
    y_rest = balanced_labels(2100, len(kinds), generator)
    x_rest = draw(kinds, y_rest, side=32, channels=1, noise=0.1, generator=generator)
    y_test = balanced_labels(300, len(kinds), generator)
    x_test = draw(kinds, y_test, side=32, channels=1, noise=0.1, generator=generator)
    # dltool holds out round(0.1 * 2100) = 210 validation images, stratified, seeded
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=210, random_state=7, stratify=y_rest
    )

with phase("build"):
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.002),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

with phase("fit"):
    history = model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=20, batch_size=32, verbose=0
    )

with phase("evaluate"):
    model.evaluate(x_test, y_test, verbose=0)
    model.predict(x_test, verbose=0)

with phase("save"):
    model.save("plain-shapes-cnn.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(x_train))
