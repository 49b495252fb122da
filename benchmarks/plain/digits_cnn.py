"""configs/digits_cnn.yaml as a plain Keras script (same data split, model, training)."""

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(42)
data = load_digits()
x, y = data.data.astype("float32").reshape(-1, 8, 8, 1), data.target.astype("int64")
x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
x_train, x_val, y_train, y_val = train_test_split(
    x_rest, y_rest, test_size=0.1, random_state=42, stratify=y_rest
)

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
stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True)
model.fit(
    x_train,
    y_train,
    validation_data=(x_val, y_val),
    epochs=40,
    batch_size=32,
    callbacks=[stop],
    verbose=0,
)
print(model.evaluate(x_test, y_test, verbose=0))
model.predict(x_test, verbose=0)
model.save("plain-digits-cnn.keras")  # into the current folder: the runner runs in a scratch one
