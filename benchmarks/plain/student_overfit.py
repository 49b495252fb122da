"""configs/student_overfit.yaml as a plain Keras script: same data, split, model, epochs, seed."""

from phases import Phases

phase = Phases()
with phase("import"):
    import keras
    import numpy as np

with phase("data"):
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(5)
    generator = np.random.default_rng(5)

    def students(n: int) -> tuple[np.ndarray, np.ndarray]:
        """Realistic students and a noisy pass rule (dltool/data/student.py, ``labels: rule``)."""
        age = generator.integers(17, 31, size=n).astype("float64")  # years
        hours = generator.uniform(0.0, 40.0, size=n)  # studied per week
        previous = np.clip(generator.normal(65.0, 15.0, size=n), 0.0, 100.0)  # score out of 100
        score = 0.12 * (hours - 15) + 0.08 * (previous - 65) - 0.05 * (age - 23)
        passed = score + generator.normal(0.0, 0.3, size=n) > 0
        return np.column_stack([age, hours, previous]), passed.astype("int64")

    x_rest, y_rest = students(200)
    x_test, y_test = students(500)
    # dltool holds out round(0.5 * 200) = 100 validation rows, stratified, seeded
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=100, random_state=5, stratify=y_rest
    )

with phase("build"):
    normalization = keras.layers.Normalization()
    normalization.adapt(x_train.astype("float32"))
    model = keras.Sequential([
        keras.Input((3,)),
        normalization,
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.0),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.0),
        keras.layers.Dense(1, activation="sigmoid"),
    ])  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.003), loss="binary_crossentropy", metrics=["accuracy"]
    )

with phase("fit"):
    history = model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=150, batch_size=16, verbose=0
    )

with phase("evaluate"):
    model.evaluate(x_test, y_test, verbose=0)
    model.predict(x_test, verbose=0)

with phase("save"):
    model.save("plain-student-overfit.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(x_train))
