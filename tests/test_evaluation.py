"""``fixed_point``, the one writer of predicted values in CSV files: byte for byte what
Python's ``"%.6f" % value`` writes, for every float64 (its fast array path included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dltool.evaluation import fixed_point


def _python(values: np.ndarray) -> list[str]:
    with np.errstate(invalid="ignore"):  # a float32 signalling nan
        wide = values.astype("float64").reshape(-1)
    return ["%.6f" % value for value in wide]  # noqa: UP031  (the reference)


def _halves(count: int, rng: np.random.Generator) -> np.ndarray:
    """Values at, and a few ulps either side of, a half millionth (k + 0.5) / 1e6: where
    a float product can round the other way than the exact decimal value."""
    centres = (rng.integers(-(10**12), 10**12, count) + 0.5) / 1e6
    steps = rng.integers(-3, 4, count)
    return np.array([_ulps(c, s) for c, s in zip(centres, steps, strict=True)])


def _ulps(value: float, steps: int) -> float:
    for _ in range(abs(steps)):
        value = float(np.nextafter(value, np.inf if steps > 0 else -np.inf))
    return value


EDGES = [
    0.0, -0.0, 1e-6, -1e-6, 5e-7, 0.0000005, -0.0000005, 4.999999999e-7, 5.000000001e-7,
    1e-7, -1e-7, 1.5e-6, 2.5e-6, 0.5, 1.0, -1.0, 0.9999995, 0.99999949999, 0.0000015,
    1 / 128, 3 / 128, -5 / 128, 1 / 64, 123456.7890125, -12.5, 9.9999995, 99.9999995,
    999999999.9999995, 999999999.999999, 1e9, -1e9, 1e9 - 1e-6, 1e15, 2.0**53, 1e20, -1e20,
    1e300, -1e308, np.finfo("float64").max, 5e-324, -5e-324, 2.2250738585072014e-308,
    np.finfo("float32").tiny, float(np.float32(0.1)), float(np.float32(1e-6)),
    np.nan, -np.nan, np.inf, -np.inf,
]  # fmt: skip


def test_edges_are_written_as_python_writes_them() -> None:
    values = np.array(EDGES, dtype="float64")
    assert list(fixed_point(values)) == _python(values)
    assert [fixed_point(v) for v in EDGES] == _python(values)  # one value: Python itself


def test_random_values_of_every_size_are_written_as_python_writes_them() -> None:
    rng = np.random.default_rng(17)
    parts = [
        rng.random(20_000),  # probabilities
        rng.random(20_000).astype("float32"),  # as the model gives them
        rng.random(20_000) * 1e-5,  # around the last decimal
        rng.standard_normal(20_000) * 10.0 ** rng.integers(-8, 12, 20_000),  # regression
        _halves(5_000, rng),
        np.arange(-4_000, 4_000) / 128,  # exact ties: Python rounds half to even
        # any bits: nan, inf, denormals, huge
        rng.integers(0, 2**64, 20_000, dtype="uint64").view("float64"),
        rng.integers(0, 2**32, 20_000, dtype="uint32").view("float32"),
    ]
    for values in parts:
        assert list(fixed_point(values)) == _python(values), values.dtype


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20))
def test_any_floats_are_written_as_python_writes_them(values: list[float]) -> None:
    array = np.array(values, dtype="float64")
    assert list(fixed_point(array)) == _python(array)


@pytest.mark.parametrize(
    "values",
    [
        np.array([[1e-6, 0.5], [2e-7, -3.25]], dtype="float32"),  # (rows, classes)
        np.array(0.25),  # 0-d
        np.zeros((0, 2)),  # no rows
        np.array([1, -2, 3]),  # whole numbers
        np.array([True, False]),
    ],
    ids=["2-d float32", "0-d", "empty", "int", "bool"],
)
def test_any_shape_and_dtype_keeps_its_shape(values: np.ndarray) -> None:
    text = fixed_point(values)
    assert text.shape == values.shape
    assert text.dtype.kind == "U"
    assert [str(t) for t in text.reshape(-1)] == _python(values)


@pytest.mark.parametrize(
    "values",
    [
        np.arange(-1_005, 120_000),  # row numbers, of every width
        np.array([0]),
        np.array([], dtype="int64"),
        np.array([10**17, -(10**17) + 1, 10**18 - 1, -(10**18) + 1]),
        np.array([2**63 - 1, -(2**63)]),  # beyond 18 digits: numpy's own text
        np.arange(250, 256, dtype="uint8"),
        np.array([2**64 - 1], dtype="uint64"),
    ],
    ids=["rows", "zero", "empty", "18 digits", "int64 limits", "uint8", "uint64 limit"],
)
def test_whole_numbers_are_written_as_str_writes_them(values: np.ndarray) -> None:
    from dltool.evaluation import whole_number_text

    assert list(whole_number_text(values)) == [str(v) for v in values.tolist()]
