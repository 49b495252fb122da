"""The curriculum's synthetic students: (age, hours studied, previous score) -> pass/fail.

``labels: random`` is the notebook, number for number::

    np.random.seed(seed)
    train = np.random.random((n_train, 3))
    test = np.random.random((n_test, 3))
    labels = np.random.randint(2, size=(n_train, 1))
    test_labels = np.random.randint(2, size=(n_test, 1))   # dltool's addition

Features are uniform in [0, 1) and labels are coin flips: there is nothing to
learn, and test accuracy stays near 50%. That is the lesson.

``labels: rule`` gives realistic columns and a rule a small net can learn:

- ``age``: integer years, uniform in 17..30
- ``hours_studied``: hours per week, uniform in 0..40
- ``previous_score``: average of earlier tests, normal(65, 15) clipped to 0..100
- a student passes when
  ``0.12 * (hours_studied - 15) + 0.08 * (previous_score - 65) - 0.05 * (age - 23) + noise > 0``
  with ``noise ~ normal(0, 0.3)``; the noise caps achievable accuracy at about 95%.

With ``labels: rule`` the model gets a Normalization layer adapted on the training
rows (unless it starts with one, or ``normalize: false``), so it takes raw values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dltool.data import Dataset

FEATURES = ["age", "hours_studied", "previous_score"]
CLASSES = ["fail", "pass"]
RULE_NOISE = 0.3  # standard deviation of the noise added to the pass score


def notebook_arrays(
    n_train: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The notebook's random data: (x_train, y_train, x_test, y_test), in its draw order."""
    # RandomState(seed) is the generator np.random.seed(seed) resets: same numbers,
    # without touching the global state other code may rely on.
    generator = np.random.RandomState(seed)
    x_train = generator.random_sample((n_train, 3))
    x_test = generator.random_sample((n_test, 3))
    y_train = generator.randint(2, size=(n_train, 1))
    y_test = generator.randint(2, size=(n_test, 1))
    return x_train, y_train, x_test, y_test


def pass_score(x: np.ndarray) -> np.ndarray:
    """The noiseless rule: positive means pass. ``x`` has the FEATURES columns."""
    age, hours, previous = x[:, 0], x[:, 1], x[:, 2]
    return 0.12 * (hours - 15) + 0.08 * (previous - 65) - 0.05 * (age - 23)


def rule_arrays(n: int, generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` realistic students and their noisy pass (1) / fail (0) labels."""
    age = generator.integers(17, 31, size=n).astype("float64")
    hours = generator.uniform(0.0, 40.0, size=n)
    previous = np.clip(generator.normal(65.0, 15.0, size=n), 0.0, 100.0)
    x = np.column_stack([age, hours, previous])
    noisy = pass_score(x) + generator.normal(0.0, RULE_NOISE, size=n)
    return x, (noisy > 0).astype("int64").reshape(-1, 1)


def load(config: Any, seed: int, task: str) -> Dataset:
    if config.labels == "random":
        x_train, y_train, x_test, y_test = notebook_arrays(config.n_train, config.n_test, seed)
    else:
        generator = np.random.default_rng(seed)
        x_train, y_train = rule_arrays(config.n_train, generator)
        x_test, y_test = rule_arrays(config.n_test, generator)
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        feature_names=list(FEATURES),
        class_names=list(CLASSES),
        # rule: raw ages, hours and scores, standardized inside the model (see model.py)
        notes={
            "labels": config.labels,
            "normalize": config.labels == "rule" if config.normalize is None else config.normalize,
        },
    )
