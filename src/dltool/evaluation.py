"""What a run reports about its model on the test split: predictions, per-class scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dltool.config import ExperimentConfig


@dataclass
class Predictions:
    """Model outputs for labelled examples, read as the task implies."""

    task: str  # binary | multiclass | regression
    raw: np.ndarray  # what the model returned, (n, outputs)
    y_true: np.ndarray  # (n, k) labels as given
    class_names: list[str]

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


def predict(model: Any, x: np.ndarray, y: np.ndarray, config: ExperimentConfig, class_names: list[str] | None, batch_size: int) -> Predictions:  # fmt: skip
    raw = np.asarray(
        model.predict(np.asarray(x, dtype="float32"), batch_size=batch_size, verbose=0)
    )
    y_true = np.asarray(y).reshape(len(y), -1)
    names = class_names or [str(i) for i in range(max(2, raw.shape[1]))]
    return Predictions(task=config.task, raw=raw, y_true=y_true, class_names=names)


def predictions_table(predictions: Predictions) -> tuple[list[str], list[list[Any]]]:
    """``predictions.csv``: index, true, predicted, correct, prob_<class>... (or error)."""
    if predictions.task == "regression":
        true, predicted = predictions.y_true[:, 0], predictions.raw[:, 0]
        rows = [[i, _round(t), _round(p), _round(p - t)] for i, (t, p) in enumerate(zip(true, predicted, strict=True))]  # fmt: skip
        return ["index", "true", "predicted", "error"], rows
    names = predictions.class_names
    header = ["index", "true", "predicted", "correct", *(f"prob_{name}" for name in names)]
    true, predicted = predictions.true_index, predictions.predicted_index
    rows = [
        [i, names[t], names[p], bool(t == p), *(_round(v) for v in probabilities)]
        for i, (t, p, probabilities) in enumerate(zip(true, predicted, predictions.probabilities, strict=True))
    ]  # fmt: skip
    return header, rows


def class_report(predictions: Predictions) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support (scikit-learn's), plus the confusion matrix."""
    from sklearn.metrics import classification_report, confusion_matrix

    labels = list(range(len(predictions.class_names)))
    true, predicted = predictions.true_index, predictions.predicted_index
    report = classification_report(
        true,
        predicted,
        labels=labels,
        target_names=predictions.class_names,
        output_dict=True,
        zero_division=0,
    )
    matrix = confusion_matrix(true, predicted, labels=labels)
    return {
        "per_class": {name: report[name] for name in predictions.class_names},
        "macro_avg": report["macro avg"],
        "weighted_avg": report["weighted avg"],
        "confusion_matrix": {
            "labels": predictions.class_names,
            "rows_true_columns_predicted": matrix.tolist(),
        },
    }


def loss_first(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(values[k]) for k in sorted(values, key=lambda k: k != "loss")}


def _round(value: Any) -> float:
    return round(float(value), 6)
