"""What a run reports about its model: predictions, per-class scores, streamed evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dltool.config import ExperimentConfig

if TYPE_CHECKING:
    from dltool.data.rows import Rows


@dataclass
class Predictions:
    """Model outputs for labelled examples, read as the task implies."""

    task: str  # binary | multiclass | regression
    raw: np.ndarray  # what the model returned, (n, outputs)
    y_true: np.ndarray  # (n, k) labels as given
    class_names: list[str]
    index: np.ndarray | None = None  # each row's position in the split (None: 0..n-1)

    def subset(self, keep: np.ndarray) -> Predictions:
        """The rows where ``keep`` is True, keeping their positions in the split."""
        if keep.all():
            return self
        positions = np.arange(len(self.raw)) if self.index is None else self.index
        return replace(self, raw=self.raw[keep], y_true=self.y_true[keep], index=positions[keep])

    @property
    def positions(self) -> np.ndarray:
        return np.arange(len(self.raw)) if self.index is None else self.index

    @property
    def probabilities(self) -> np.ndarray:
        """(n, classes): a sigmoid output p becomes the two columns [1 - p, p]."""
        if self.task == "binary":
            return np.column_stack([1.0 - self.raw[:, 0], self.raw[:, 0]])
        return self.raw

    @property
    def true_index(self) -> np.ndarray:
        if self.y_true.shape[1] > 1:  # one-hot labels
            return self.y_true.argmax(axis=1)
        return self.y_true[:, 0].astype(int)

    @property
    def predicted_index(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def predict(model: Any, x: np.ndarray | Rows, y: np.ndarray, config: ExperimentConfig, class_names: list[str] | None, batch_size: int) -> Predictions:  # fmt: skip
    from dltool.pipelines import predict_array  # TensorFlow: only where a model runs

    raw = predict_array(model, x, batch_size)
    y_true = np.asarray(y).reshape(len(y), -1)
    names = class_names or [str(i) for i in range(max(2, raw.shape[1]))]
    return Predictions(task=config.task, raw=raw, y_true=y_true, class_names=names)


def predictions_table(predictions: Predictions) -> tuple[list[str], Iterator[list[Any]]]:
    """``predictions.csv``: index, true, predicted, correct, prob_<class>... (or error).

    The rows are made one at a time as they are written: a million test rows as Python
    lists held at once took hundreds of MB.
    """
    if predictions.task == "regression":
        true, predicted = predictions.y_true[:, 0], predictions.raw[:, 0]
        rows = ([int(i), fixed_point(t), fixed_point(p), fixed_point(p - t)] for i, t, p in zip(predictions.positions, true, predicted, strict=True))  # fmt: skip
        return ["index", "true", "predicted", "error"], rows
    names = predictions.class_names
    header = ["index", "true", "predicted", "correct", *(f"prob_{name}" for name in names)]
    true, predicted = predictions.true_index, predictions.predicted_index
    rows = (
        [int(i), names[t], names[p], bool(t == p), *(fixed_point(v) for v in probabilities)]
        for i, t, p, probabilities in zip(predictions.positions, true, predicted, predictions.probabilities, strict=True)
    )  # fmt: skip
    return header, rows


def class_report(predictions: Predictions) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, plus the confusion matrix."""
    count = len(predictions.class_names)
    matrix = confusion_counts(predictions.true_index, predictions.predicted_index, count)
    return report_from_matrix(matrix, predictions.class_names)


def confusion_counts(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) int64 counts: rows are true classes, columns predicted ones."""
    pairs = np.asarray(true, dtype="int64") * classes + np.asarray(predicted, dtype="int64")
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def report_from_matrix(matrix: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """scikit-learn's classification report (``zero_division=0``), read off a confusion matrix.

    A matrix can be summed chunk by chunk, so ``dltool evaluate`` needs no row kept.
    """
    counts = np.asarray(matrix, dtype="int64")
    hits = np.diag(counts).astype("float64")
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    scores = {
        "precision": _ratio(hits, predicted),
        "recall": _ratio(hits, support),
        "f1-score": _ratio(2 * hits, support + predicted),  # 2pr / (p + r)
    }
    total = int(support.sum())
    weights = support / total if total else np.zeros(len(support))
    return {
        "per_class": {
            name: {**{k: float(v[i]) for k, v in scores.items()}, "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "macro_avg": {**{k: float(v.mean()) for k, v in scores.items()}, "support": total},
        "weighted_avg": {**{k: float(v @ weights) for k, v in scores.items()}, "support": total},
        "confusion_matrix": {
            "labels": list(class_names),
            "rows_true_columns_predicted": counts.tolist(),
        },
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def model_labels(y: np.ndarray, task: str, one_hot: bool, outputs: int) -> np.ndarray:
    """Labels shaped as the loss expects them, for training and evaluation alike.

    Args:
        y: labels as the data sources give them (class indices, or target values).
        task: 'binary', 'multiclass' or 'regression'.
        one_hot: the loss is categorical_crossentropy (one-hot rows from class indices).
        outputs: the model's output units.
    """
    flat = np.asarray(y).reshape(len(y), -1)
    if task != "multiclass":
        return flat.astype("float32")
    if one_hot and flat.shape[1] == 1:
        return np.eye(outputs, dtype="float32")[flat[:, 0].astype("int64")]
    return flat.astype("int32") if flat.shape[1] == 1 else flat.astype("float32")


class StreamingScores:
    """Loss, the model's compiled metrics and the confusion matrix, summed chunk by chunk.

    The result equals one ``model.evaluate`` over every row, with no row kept: the
    loss is each chunk's mean weighted by its rows (Keras weights each batch's mean
    by its size the same way) and the metrics keep their Keras state between
    chunks, so AUC, precision and the like stay exact.
    """

    def __init__(self, model: Any, task: str, class_names: list[str], one_hot: bool, penalty: float = 0.0) -> None:  # fmt: skip
        self.model, self.task, self.class_names, self.one_hot = model, task, class_names, one_hot
        self.penalty = penalty  # a weight penalty the model's own compute_loss would add
        self.loss_sum = 0.0  # sum over chunks of (mean loss x rows)
        self.rows = 0
        self.matrix = np.zeros((len(class_names), len(class_names)), dtype="int64")
        model.reset_metrics()

    def add(self, raw: np.ndarray, y: np.ndarray) -> None:
        """One chunk: the model's outputs and the labels (class indices, or values for regression)."""
        labels = model_labels(y, self.task, self.one_hot, int(self.model.output_shape[-1]))
        loss = self.model.compute_loss(y=labels, y_pred=raw, training=False)
        self.loss_sum += float(loss) * len(y)
        self.rows += len(y)
        self.model.compute_metrics(None, labels, raw)  # updates the metric states
        if self.task != "regression":
            read = Predictions(self.task, raw, y.reshape(-1, 1), self.class_names)
            self.matrix += confusion_counts(y, read.predicted_index, len(self.class_names))

    def metrics(self) -> dict[str, float]:
        """loss first, then each compiled metric, as ``model.evaluate(return_dict=True)``."""
        values = {k: float(v) for k, v in self.model.get_metrics_result().items()}
        values["loss"] = self.loss_sum / max(self.rows, 1) + self.penalty
        return loss_first(values)

    def report(self) -> dict[str, Any] | None:
        return None if self.task == "regression" else report_from_matrix(self.matrix, self.class_names)  # fmt: skip


def loss_first(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(values[k]) for k in sorted(values, key=lambda k: k != "loss")}


DECIMALS = 6  # predicted values in CSV files: predictions.csv and dltool predict's output
SCALE = 10**DECIMALS  # a value in whole units of the last decimal: value * SCALE
# Below this magnitude value * SCALE is under 2**53 (1e15 < 9.007e15), so whole numbers of it
# are exact in float64; larger values are formatted by Python.
FAST_LIMIT = 1e9
_POWERS = 10 ** np.arange(1, 19, dtype="int64")  # 10 .. 10**18: digits = 1 + powers <= number


def fixed_point(values: Any) -> Any:
    """Numbers as CSV text with :data:`DECIMALS` decimals, never ``1e-06``: one value or a
    numpy array (of strings, then), exactly as Python's ``"%.6f" % value`` writes each.

    An array is formatted by integer arithmetic on whole numbers of millionths (2M values in
    0.16 s on 2 cores; ``np.char.mod``, a Python call per value, took 4.5 s). Values whose
    float product could round the other way than the exact decimal value (within its
    rounding error of a half: ties such as 1/128), non-finite values and huge ones are
    formatted by Python itself.
    """
    if not isinstance(values, np.ndarray):
        return f"{float(values):.{DECIMALS}f}"
    with np.errstate(over="ignore", invalid="ignore"):  # inf, nan: formatted by Python below
        flat = values.astype("float64").reshape(-1)
        scaled = np.abs(flat) * SCALE  # within half an ulp of the exact product
        # |scaled - exact| <= scaled * 2**-53; four times that margin, to be safe
        near_half = np.abs(scaled - np.floor(scaled) - 0.5) <= scaled * 2.0**-51
    python = near_half | ~(scaled < FAST_LIMIT * SCALE)  # also nan and inf
    whole = np.rint(np.where(python, 0.0, scaled)).astype("int64")
    text = _digit_text(whole, np.signbit(flat), DECIMALS)
    if python.any():
        exact = np.char.mod(f"%.{DECIMALS}f", flat[python])
        text = text.astype(np.promote_types(text.dtype, exact.dtype))
        text[python] = exact
    return text.reshape(values.shape)


def whole_number_text(values: np.ndarray) -> np.ndarray:
    """Whole numbers as text, as ``str()`` writes them (and pandas' ``to_csv``): row numbers."""
    if values.dtype.kind not in "iu" or (values.size and max(-int(values.min()), int(values.max())) >= 10**18):  # fmt: skip
        return values.astype(str)  # beyond the digits _digit_text makes: slower, the same text
    return _digit_text(np.abs(values.astype("int64")), values < 0, decimals=0)


def _digit_text(whole: np.ndarray, negative: np.ndarray, decimals: int) -> np.ndarray:
    """``whole`` units of the last decimal (whole numbers >= 0) as text: "-" where
    ``negative``, the integer part, then "." and ``decimals`` digits (none for 0).

    Built as a matrix of code points, one row per character position and one column per
    value, right-aligned, padded with code point 1; transposed into a string array, the
    padding is stripped from the left (3x faster than moving each value's characters).
    """
    integer = whole // 10**decimals  # floor_divide by a constant: several times faster than divmod
    fraction = (whole - integer * 10**decimals).astype("uint32")  # < 10**decimals
    digits = 1 + np.searchsorted(_POWERS, integer, side="right")  # of the integer part
    point = 1 if decimals else 0
    length = negative + digits + point + decimals
    width = int(length.max(initial=1 + point + decimals))
    chars = np.ones((width, len(whole)), dtype="uint32")  # 1: padding
    for position in range(width - 1, width - 1 - decimals, -1):  # the decimals, last first
        rest = fraction // 10
        chars[position] = fraction - rest * 10 + ord("0")
        fraction = rest
    units = width - 1 - decimals - point  # the position of the integer part's units
    if point:
        chars[units + 1] = ord(".")
    for place in range(int(digits.max(initial=1))):  # the integer part, units first
        rest = integer // 10
        digit = integer - rest * 10 + ord("0")
        chars[units - place] = digit if place == 0 else np.where(place < digits, digit, 1)
        integer = rest
    columns = np.flatnonzero(negative)
    chars[units - digits[columns], columns] = ord("-")
    text = np.ascontiguousarray(chars.T).view(f"U{width}").reshape(len(whole))
    return np.strings.lstrip(text, "\x01") if (length < width).any() else text


MISTAKES_SHOWN = 12  # the worst test mistakes a run keeps the inputs of, for its report


def worst_mistakes(wrong: np.ndarray, badness: np.ndarray, count: int = MISTAKES_SHOWN) -> np.ndarray:  # fmt: skip
    """Indices of the ``count`` worst mistakes, worst first (ties: the lower index first).

    Args:
        wrong: (n,) bool: which examples were misclassified (all True for regression).
        badness: (n,) how bad each one is: the predicted class's probability (the most
            confident wrong answers first), or the absolute error for regression.
    """
    candidates = np.flatnonzero(np.asarray(wrong, dtype=bool))
    scores = np.nan_to_num(np.asarray(badness, dtype="float64")[candidates], nan=np.inf)
    order = np.lexsort((candidates, -scores))
    return candidates[order[:count]]


def mistakes_of(predictions: Predictions) -> np.ndarray:
    """The worst test mistakes of ``predictions`` (see :func:`worst_mistakes`)."""
    if predictions.task == "regression":
        error = np.abs(predictions.raw[:, 0] - predictions.y_true[:, 0])
        return worst_mistakes(np.ones(len(error), dtype=bool), error)
    wrong = predictions.true_index != predictions.predicted_index
    return worst_mistakes(wrong, predictions.probabilities.max(axis=1))
