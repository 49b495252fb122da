"""configs/digits_cnn.yaml as a plain Keras script: same split, model, epochs, batch size, seed.

Early stopping is off on both sides of the benchmark and both train EPOCHS epochs
(compare.py runs dltool with the same --set), so both do the same work.
"""

from phases import Phases

EPOCHS = 29  # where early stopping (val_loss, patience 6) ended dltool's run of this config

phase = Phases()
with phase("import"):
    import keras

with phase("data"):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(42)
    data = load_digits()
    x, y = data.data.astype("float32").reshape(-1, 8, 8, 1), data.target.astype("int64")
    # dltool holds out round(fraction * rows), stratified, seeded: 359 test, then 144 validation
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=round(0.2 * len(x)), random_state=42, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=round(0.1 * len(x_rest)), random_state=42, stratify=y_rest
    )

with phase("build"):
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Rescaling(1 / 16),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

with phase("fit"):
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=EPOCHS,
        batch_size=32,
        verbose=0,
    )

with phase("evaluate"):
    model.evaluate(x_test, y_test, verbose=0)
    model.predict(x_test, verbose=0)

with phase("save"):
    model.save("plain-digits-cnn.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(x_train))
