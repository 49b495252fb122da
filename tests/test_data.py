"""Data sources: the notebook reproduced exactly, the rule learnable, splits seeded."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_stratified
from dltool.data import Dataset, hold_out, load_dataset, split_validation
from dltool.data.student import StudentData, notebook_arrays, pass_score, rule_arrays
from dltool.errors import DataError


def test_notebook_reproduced_exactly() -> None:
    x_train, y_train, x_test, y_test = notebook_arrays(1000, 500, seed=200)
    np.testing.assert_allclose(x_train[0], [0.94763226, 0.22654742, 0.59442014], atol=5e-9)
    np.testing.assert_allclose(x_train[-1], [0.87752115, 0.20447666, 0.32131087], atol=5e-9)
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == (
        (1000, 3),
        (1000, 1),
        (500, 3),
        (500, 1),
    )
    # The notebook's exact calls, in its order, on numpy's global generator.
    np.random.seed(200)
    expected_train = np.random.random((1000, 3))
    expected_test = np.random.random((500, 3))
    expected_labels = np.random.randint(2, size=(1000, 1))
    expected_test_labels = np.random.randint(2, size=(500, 1))  # dltool's documented addition
    np.testing.assert_array_equal(x_train, expected_train)
    np.testing.assert_array_equal(x_test, expected_test)
    np.testing.assert_array_equal(y_train, expected_labels)
    np.testing.assert_array_equal(y_test, expected_test_labels)


def test_random_mode_through_the_loader() -> None:
    dataset = load_dataset(StudentData(source="student"), seed=200)
    np.testing.assert_allclose(dataset.x_train[0], [0.94763226, 0.22654742, 0.59442014], atol=5e-9)
    assert dataset.class_names == ["fail", "pass"]
    assert dataset.x_val is None


def test_rule_columns_are_plausible_and_seeded() -> None:
    x, y = rule_arrays(5000, np.random.default_rng(0))
    age, hours, previous = x.T
    assert age.min() >= 17
    assert age.max() <= 30
    assert np.all(age == np.round(age))
    assert hours.min() >= 0
    assert hours.max() <= 40
    assert previous.min() >= 0
    assert previous.max() <= 100
    assert 0.4 < y.mean() < 0.75  # both classes well represented
    agreement = ((pass_score(x) > 0) == y.ravel()).mean()
    assert 0.9 < agreement < 0.99  # learnable, but noisy
    again_x, again_y = rule_arrays(5000, np.random.default_rng(0))
    np.testing.assert_array_equal(x, again_x)
    np.testing.assert_array_equal(y, again_y)


def test_validation_split_is_shuffled_and_seeded() -> None:
    sorted_labels = np.repeat([0, 1], 50).reshape(-1, 1)  # sorted by class, like class folders
    data = Dataset(x_train=np.arange(100.0).reshape(-1, 1), y_train=sorted_labels)
    split = split_validation(data, 0.2, seed=1)
    assert split.x_val is not None
    assert split.y_val is not None
    assert (len(split.x_train), len(split.x_val)) == (80, 20)
    assert_stratified(split.y_val, sorted_labels)  # Keras' own split would give one class only
    assert_stratified(split.y_train, sorted_labels)
    assert sorted(np.concatenate([split.x_train, split.x_val]).ravel()) == list(np.arange(100.0))
    again = split_validation(
        Dataset(x_train=np.arange(100.0).reshape(-1, 1), y_train=sorted_labels), 0.2, seed=1
    )
    np.testing.assert_array_equal(split.x_val, again.x_val)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hold_out_keeps_each_class_share(fraction: float, seed: int) -> None:
    labels = np.repeat([0, 1, 2, 3], [70, 20, 8, 2]).reshape(-1, 1)  # sorted, uneven
    x_kept, y_kept, x_held, y_held = hold_out(labels * 10.0, labels, fraction, seed, "test_split")
    assert len(y_held) == round(100 * fraction)
    assert_stratified(y_held, labels)
    assert_stratified(y_kept, labels)
    np.testing.assert_array_equal(x_held, y_held * 10.0)  # rows stay with their labels
    np.testing.assert_array_equal(x_kept, y_kept * 10.0)
    assert sorted(np.concatenate([y_kept, y_held]).ravel()) == sorted(labels.ravel())


def test_validation_split_too_small() -> None:
    data = Dataset(x_train=np.zeros((3, 1)), y_train=np.zeros((3, 1)))
    with pytest.raises(
        DataError,
        match=r"data.validation_split: 0.1 of 3 rows leaves 3 to train on and 0 to hold out",
    ):
        split_validation(data, 0.1, seed=0)
