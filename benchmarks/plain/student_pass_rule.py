"""configs/student_pass_rule.yaml as a plain Keras script: same data, split, model, epochs, seed.

Early stopping is off on both sides of the benchmark and both train EPOCHS epochs
(compare.py runs dltool with the same --set), so both do the same work. The best
epoch is kept as best.keras, as the config's save_best does.
"""

from phases import Phases

EPOCHS = 9  # where early stopping (val_loss, patience 5) ended dltool's run of this config

phase = Phases()
with phase("import"):
    import keras
    import numpy as np

with phase("data"):
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(7)
    generator = np.random.default_rng(7)

    def students(n: int) -> tuple[np.ndarray, np.ndarray]:
        """Realistic students and a noisy pass rule (dltool/data/student.py, ``labels: rule``)."""
        age = generator.integers(17, 31, size=n).astype("float64")  # years
        hours = generator.uniform(0.0, 40.0, size=n)  # studied per week
        previous = np.clip(generator.normal(65.0, 15.0, size=n), 0.0, 100.0)  # score out of 100
        score = 0.12 * (hours - 15) + 0.08 * (previous - 65) - 0.05 * (age - 23)
        passed = score + generator.normal(0.0, 0.3, size=n) > 0
        return np.column_stack([age, hours, previous]), passed.astype("int64")

    x_rest, y_rest = students(2000)
    x_test, y_test = students(500)
    # dltool holds out round(0.2 * 2000) = 400 validation rows, stratified, seeded
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=400, random_state=7, stratify=y_rest
    )

with phase("build"):
    normalization = keras.layers.Normalization()
    normalization.adapt(x_train.astype("float32"))
    l2 = keras.regularizers.L2(0.0001)
    model = keras.Sequential([
        keras.Input((3,)),
        normalization,
        keras.layers.Dense(16, activation="relu", kernel_regularizer=l2),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(8, activation="relu", kernel_regularizer=l2),
        keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=l2),
    ])  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC()],
    )

with phase("fit"):
    best = keras.callbacks.ModelCheckpoint(
        "plain-best.keras", monitor="val_accuracy", mode="max", save_best_only=True
    )
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=EPOCHS,
        batch_size=32,
        callbacks=[best],
        verbose=0,
    )

with phase("evaluate"):
    model.evaluate(x_test, y_test, verbose=0)
    model.predict(x_test, verbose=0)

with phase("save"):
    model.save("plain-student-pass-rule.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(x_train))
