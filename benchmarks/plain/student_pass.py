"""The curriculum notebook as a plain Keras script: what configs/student_pass.yaml does."""

from phases import Phases

phase = Phases()
with phase("import"):
    import keras
    import numpy as np
    from keras.layers import Dense
    from keras.models import Sequential

with phase("data"):
    # the notebook's np.random.seed(200), plus Keras' seeds, as dltool does
    keras.utils.set_random_seed(200)
    train_data, test_data = np.random.random((1000, 3)), np.random.random((500, 3))
    labels = np.random.randint(2, size=(1000, 1))
    test_labels = np.random.randint(2, size=(500, 1))

with phase("build"):
    model = Sequential()
    model.add(Dense(5, input_dim=3, activation="relu"))
    model.add(Dense(4, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])

with phase("fit"):
    history = model.fit(train_data, labels, epochs=10, batch_size=32, verbose=0)

with phase("evaluate"):
    model.evaluate(test_data, test_labels, verbose=0)
    predictions = model.predict(test_data, verbose=0)

with phase("save"):
    model.save("plain-student-pass.keras")  # the current folder: a scratch one

phase.report(len(history.history["loss"]), len(train_data))
