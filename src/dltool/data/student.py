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

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from dltool.data import Dataset
from dltool.data.source import DataSource
from dltool.schema import Int

if TYPE_CHECKING:
    import numpy as np

FEATURES = ["age", "hours_studied", "previous_score"]
CLASSES = ["fail", "pass"]
RULE_NOISE = 0.3  # standard deviation of the noise added to the pass score


def notebook_arrays(
    n_train: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The notebook's random data: (x_train, y_train, x_test, y_test), in its draw order."""
    import numpy as np

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
    import numpy as np

    age = generator.integers(17, 31, size=n).astype("float64")
    hours = generator.uniform(0.0, 40.0, size=n)
    previous = np.clip(generator.normal(65.0, 15.0, size=n), 0.0, 100.0)
    x = np.column_stack([age, hours, previous])
    noisy = pass_score(x) + generator.normal(0.0, RULE_NOISE, size=n)
    return x, (noisy > 0).astype("int64").reshape(-1, 1)


class StudentData(DataSource):
    """The curriculum's synthetic students: age, hours studied, previous score -> pass/fail."""

    source: Literal["student"]
    n_train: Int = Field(1000, ge=1, le=10_000_000, description="training rows")
    n_test: Int = Field(500, ge=1, le=10_000_000, description="test rows")
    labels: Literal["random", "rule"] = Field(
        "random",
        description="'random': exactly the notebook (nothing to learn); "
        "'rule': realistic columns and a learnable noisy pass/fail rule",
    )
    normalize: bool | None = Field(
        None,
        description="prepend a Normalization layer adapted on the training rows (skipped when "
        "the model starts with one); default: true for labels 'rule' (raw ages, hours and "
        "scores), false for 'random' (the notebook has none)",
    )

    def input_shape(self) -> list[int] | None:
        return [3]

    def class_count(self) -> int | None:
        return 2

    def load(self, seed: int, task: str) -> Dataset:
        """The notebook's random students, or rule-labelled ones (``task`` is unused)."""
        import numpy as np

        if self.labels == "random":
            x_train, y_train, x_test, y_test = notebook_arrays(self.n_train, self.n_test, seed)
        else:
            generator = np.random.default_rng(seed)
            x_train, y_train = rule_arrays(self.n_train, generator)
            x_test, y_test = rule_arrays(self.n_test, generator)
        return Dataset(
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            feature_names=list(FEATURES),
            class_names=list(CLASSES),
            # rule: raw ages, hours and scores, standardized inside the model (see model.py)
            notes={
                "labels": self.labels,
                "normalize": self.labels == "rule" if self.normalize is None else self.normalize,
            },
        )
