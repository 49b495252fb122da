"""Data sources. Each returns a :class:`Dataset`; :func:`load_dataset` holds out test and validation rows.

Each source module defines its ``data:`` spec beside its loader: the spec's
``load(seed, task) -> Dataset`` (:class:`dltool.data.source.DataSource`) reads it,
where ``task`` is ``"binary"``, ``"multiclass"`` or ``"regression"`` (from the loss). Loaders
return raw values: tables as float32 columns, images as float32 pixels in
0..255 with shape (n, height, width, channels); scaling belongs in the model
(a ``rescaling`` or ``normalization`` layer), so the saved model takes raw input.
Data bigger than memory comes as :class:`dltool.data.rows.Rows` instead of an array: the
same shape and indexing, read from disk a batch at a time (``loading`` in the source's
schema decides). Labels are always arrays in memory.
Classification labels are integer class indices 0..k-1 with ``class_names``.
A loader that has no test set leaves ``x_test`` as None; :func:`load_dataset`
then holds out ``test_split`` of the rows (seeded, stratified).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dltool.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from dltool.data.rows import Rows
    from dltool.data.source import DataSource


@dataclass
class Dataset:
    """Arrays ready for Keras, plus what is needed to read predictions."""

    x_train: np.ndarray | Rows  # Rows: examples that stay on disk (dltool.data.rows)
    y_train: np.ndarray
    x_test: np.ndarray | Rows | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | Rows | None = None
    y_val: np.ndarray | None = None
    feature_names: list[str] | None = None  # one per input column, for tabular data
    class_names: list[str] | None = None  # index -> name, for classification
    notes: dict[str, Any] = field(default_factory=dict)  # shown by `dltool data`, kept in run.json
    skipped: list[str] = field(default_factory=list)  # "path: reason" of every unusable file

    def splits(self) -> dict[str, tuple[np.ndarray | Rows, np.ndarray]]:
        """The non-empty splits by name: ``train``, ``validation``, ``test``."""
        named = {
            "train": (self.x_train, self.y_train),
            "validation": (self.x_val, self.y_val),
            "test": (self.x_test, self.y_test),
        }
        return {k: (x, y) for k, (x, y) in named.items() if x is not None and y is not None}


def hold_out(
    x: np.ndarray | Rows, y: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """Split ``fraction`` of the rows off: (x_kept, y_kept, x_held, y_held).

    Rows are shuffled with ``seed`` and, for class labels, stratified so each class
    keeps its share. (Keras' own ``validation_split`` takes the last rows
    unshuffled: one class only when the data is sorted by class.)

    Raises:
        DataError: ``fraction`` leaves no row on one side.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    n = len(x)
    n_held = round(n * fraction)
    if n_held < 1 or n_held >= n:
        raise DataError(
            f"data.{what}: {fraction} of {n} rows leaves {n - n_held} to train on and "
            f"{n_held} to hold out (expected at least 1 of each)"
        )
    labels = np.asarray(y).reshape(n, -1)
    stratify = None
    if labels.shape[1] == 1 and np.issubdtype(labels.dtype, np.integer):
        counts = np.unique(labels, return_counts=True)[1]
        classes = len(counts)
        if counts.min() >= 2 and classes <= n_held and classes <= n - n_held:
            stratify = labels[:, 0]
    kept, held = train_test_split(
        np.arange(n), test_size=n_held, random_state=seed, shuffle=True, stratify=stratify
    )
    return x[kept], y[kept], x[held], y[held]


def split_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """Hold out ``fraction`` of the training rows as validation data."""
    if fraction > 0:
        dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val = hold_out(
            dataset.x_train, dataset.y_train, fraction, seed, "validation_split"
        )
    return dataset


def load_dataset(data_config: DataSource, seed: int, task: str = "binary") -> Dataset:
    """Load the data a config names, then hold out test and validation rows as configured.

    Raises:
        DataError: the data cannot be used, with one line per problem.
    """
    dataset = data_config.load(seed, task)
    if dataset.x_test is None and data_config.held_out_test() > 0:
        dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test = hold_out(
            dataset.x_train, dataset.y_train, data_config.held_out_test(), seed, "test_split"
        )
    for name, (x, y) in dataset.splits().items():
        if len(x) == 0:
            raise DataError(f"data: the {name} split is empty (expected at least 1 row)")
        if len(x) != len(y):
            raise DataError(
                f"data: the {name} split has {len(x)} examples but {len(y)} labels "
                f"(expected the same number)"
            )
    return split_validation(dataset, data_config.validation_split, seed)


# A data problem about a config key ("data.name: ..."), not about a file ("/data/x.csv: ...").
CONFIG_KEY_LINE = re.compile(r"^data(\.[A-Za-z_]\w*)*: ")


@contextlib.contextmanager
def naming_config(source: str) -> Iterator[None]:
    """Put the experiment file in front of each :class:`DataError` line that names one of
    its keys, so that every refusal says which file to fix (a file's own line names it)."""
    try:
        yield
    except DataError as error:
        lines = (f"{source}: {line}" if CONFIG_KEY_LINE.match(line) else line for line in error.lines)  # fmt: skip
        raise DataError(*lines) from error
