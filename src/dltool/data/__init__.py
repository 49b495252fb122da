"""Data sources. Each returns a :class:`Dataset`; :func:`load_dataset` dispatches on ``source``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dltool.errors import DataError


@dataclass
class Dataset:
    """Arrays ready for Keras, plus what is needed to read predictions."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    feature_names: list[str] | None = None  # one per input column, for tabular data
    class_names: list[str] | None = None  # index -> name, for classification
    notes: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The non-empty splits by name: ``train``, ``validation``, ``test``."""
        named = {
            "train": (self.x_train, self.y_train),
            "validation": (self.x_val, self.y_val),
            "test": (self.x_test, self.y_test),
        }
        return {k: (x, y) for k, (x, y) in named.items() if x is not None and y is not None}


def split_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """Hold out ``fraction`` of the training rows as validation data.

    Rows are shuffled with ``seed`` first: Keras' own ``validation_split`` takes the
    last rows unshuffled, which is one class when the data is sorted by class.
    """
    if fraction <= 0:
        return dataset
    n = len(dataset.x_train)
    n_val = round(n * fraction)
    if n_val < 1 or n_val >= n:
        raise DataError(
            f"data.validation_split: {fraction} of {n} training rows leaves "
            f"{n - n_val} to train on and {n_val} to validate (expected at least 1 of each)"
        )
    order = np.random.default_rng(seed).permutation(n)
    train, val = order[: n - n_val], order[n - n_val :]
    dataset.x_val, dataset.y_val = dataset.x_train[val], dataset.y_train[val]
    dataset.x_train, dataset.y_train = dataset.x_train[train], dataset.y_train[train]
    return dataset


def _student(config: Any, seed: int) -> Dataset:
    from dltool.data import student

    return student.load(config, seed)


LOADERS: dict[str, Callable[[Any, int], Dataset]] = {
    "student": _student,
}


def load_dataset(data_config: Any, seed: int) -> Dataset:
    """Load the data a config names, then split off validation rows.

    Raises:
        DataError: the data cannot be used, with one line per problem.
    """
    dataset = LOADERS[data_config.source](data_config, seed)
    for name, (x, y) in dataset.splits().items():
        if len(x) == 0:
            raise DataError(f"data: the {name} split is empty (expected at least 1 row)")
        if len(x) != len(y):
            raise DataError(
                f"data: the {name} split has {len(x)} examples but {len(y)} labels "
                f"(expected the same number)"
            )
    return split_validation(dataset, data_config.validation_split, seed)
