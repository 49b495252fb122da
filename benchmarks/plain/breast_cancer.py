"""configs/breast_cancer.yaml as a plain Keras script: same split, model, epochs, batch size, seed.

Early stopping is off on both sides of the benchmark and both train EPOCHS epochs
(compare.py runs dltool with the same --set), so both do the same work.
"""

from phases import Phases

EPOCHS = 58  # where early stopping (val_loss, patience 15) ended dltool's run of this config

phase = Phases()
with phase("import"):
    import keras

with phase("data"):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(3)
    data = load_breast_cancer()
    x, y = data.data.astype("float32"), data.target.astype("int64")
    # dltool holds out round(fraction * rows), stratified, seeded: 114 test, then 91 validation
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=round(0.2 * len(x)), random_state=3, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=round(0.2 * len(x_rest)), random_state=3, stratify=y_rest
    )
    y_train, y_val, y_test = (labels.astype("float32") for labels in (y_train, y_val, y_test))

with phase("build"):
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
        metrics=[
            "accuracy",
            keras.metrics.AUC(),
            keras.metrics.Precision(),
            keras.metrics.Recall(),
        ],
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
    model.save("plain-breast-cancer.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(x_train))
