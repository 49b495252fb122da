"""configs/iris_csv.yaml as a plain Keras script: same CSV, split, model, epochs, batch size, seed."""

from pathlib import Path

from phases import Phases

CSV = Path(__file__).resolve().parents[2] / "configs" / "data" / "iris.csv"

phase = Phases()
with phase("import"):
    import keras

with phase("data"):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(1)
    table = pd.read_csv(CSV)
    x = table.drop(columns="species").to_numpy(dtype="float32")
    names = sorted(table["species"].unique())  # classes in alphabetical order, as dltool
    y = table["species"].map({name: index for index, name in enumerate(names)}).to_numpy("int64")
    # dltool holds out round(fraction * rows), stratified, seeded: 30 test, then 24 validation
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=round(0.2 * len(x)), random_state=1, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=round(0.2 * len(x_rest)), random_state=1, stratify=y_rest
    )

with phase("build"):
    normalization = keras.layers.Normalization(axis=-1)  # data.normalize: adapted on train rows
    normalization.adapt(x_train)
    model = keras.Sequential([
        keras.Input((4,)),
        normalization,
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

with phase("fit"):
    history = model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=60, batch_size=16, verbose=0
    )

with phase("evaluate"):
    model.evaluate(x_test, y_test, verbose=0)
    model.predict(x_test, verbose=0)

with phase("save"):
    model.save("plain-iris-csv.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(x_train))
