"""configs/breast_cancer.yaml as a plain Keras script (same data split, model, training)."""

import keras
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(3)
data = load_breast_cancer()
x, y = data.data.astype("float32"), data.target.astype("float32")
x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=3, stratify=y)
x_train, x_val, y_train, y_val = train_test_split(
    x_rest, y_rest, test_size=0.2, random_state=3, stratify=y_rest
)

normalization = keras.layers.Normalization()
normalization.adapt(x_train)
l2 = keras.regularizers.L2(0.001)
model = keras.Sequential([
    keras.Input((30,)),
    normalization,
    keras.layers.Dense(32, activation="relu", kernel_regularizer=l2),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(16, activation="relu", kernel_regularizer=l2),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=l2),
])  # fmt: skip
model.compile(
    optimizer=keras.optimizers.Adam(0.003),
    loss="binary_crossentropy",
    metrics=["accuracy", keras.metrics.AUC(), keras.metrics.Precision(), keras.metrics.Recall()],
)
stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=15, restore_best_weights=True)
model.fit(
    x_train,
    y_train,
    validation_data=(x_val, y_val),
    epochs=100,
    batch_size=32,
    callbacks=[stop],
    verbose=0,
)
print(model.evaluate(x_test, y_test, verbose=0))
model.predict(x_test, verbose=0)
model.save("plain-breast-cancer.keras")  # into the current folder: the runner runs in a scratch one
