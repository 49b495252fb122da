"""Metrics and losses: one table each, read by every part of dltool that needs a fact about them.

The config schema (which names exist, which loss a metric needs), compiling the
model (the Keras object), ``save_best``, early stopping and ``reduce_on_plateau``
(``mode: auto``), ``dltool runs --sort`` and a sweep's ``mode: auto`` all ask
:data:`METRICS`. No TensorFlow here: Keras is imported inside :meth:`MetricInfo.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

TASKS = ("binary", "multiclass", "regression")
SPLITS = ("train", "validation", "test")  # metrics.json reports each split it has
# "split.metric", as a sweep names the number it optimises (e.g. validation.loss).
METRIC_KEY_PATTERN = rf"^({'|'.join(SPLITS)})\.[a-z0-9_]+$"

# loss -> the task it implies (and so how labels and outputs are read)
LOSSES: dict[str, str] = {
    "binary_crossentropy": "binary",
    "categorical_crossentropy": "multiclass",
    "sparse_categorical_crossentropy": "multiclass",
    "mean_squared_error": "regression",
    "mean_absolute_error": "regression",
    "huber": "regression",
}


@dataclass(frozen=True)
class MetricInfo:
    """What dltool knows about one metric."""

    name: str
    higher_is_better: bool
    tasks: tuple[str, ...]  # the tasks (from the loss) it is allowed for
    keras_class: str | None  # in keras.metrics; None: Keras resolves the name from the loss
    top_k: int = 0  # for top-k accuracies: k (the class depends on the loss's label format)

    def build(self, loss: str) -> Any:
        """The Keras metric for a model compiled with ``loss``, named as in the config."""
        if self.keras_class is None:
            return self.name  # "accuracy": Keras picks binary, categorical or sparse from the loss
        import keras

        if self.top_k:
            sparse = "" if loss == "categorical_crossentropy" else "Sparse"
            kind = getattr(keras.metrics, f"{sparse}{self.keras_class}")
            return kind(k=self.top_k, name=self.name)
        return getattr(keras.metrics, self.keras_class)(name=self.name)


_CLASSIFICATION = ("binary", "multiclass")

METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("accuracy", True, _CLASSIFICATION, None),
        MetricInfo("top_2_accuracy", True, ("multiclass",), "TopKCategoricalAccuracy", top_k=2),
        MetricInfo("top_3_accuracy", True, ("multiclass",), "TopKCategoricalAccuracy", top_k=3),
        MetricInfo("top_5_accuracy", True, ("multiclass",), "TopKCategoricalAccuracy", top_k=5),
        MetricInfo("auc", True, ("binary",), "AUC"),
        MetricInfo("precision", True, ("binary",), "Precision"),
        MetricInfo("recall", True, ("binary",), "Recall"),
        MetricInfo("mean_squared_error", False, TASKS, "MeanSquaredError"),
        MetricInfo("mean_absolute_error", False, TASKS, "MeanAbsoluteError"),
        MetricInfo("root_mean_squared_error", False, TASKS, "RootMeanSquaredError"),
    )
}

if TYPE_CHECKING:
    MetricName = str
    LossName = str
else:
    MetricName = Literal[tuple(METRICS)]
    LossName = Literal[tuple(LOSSES)]

# Why a metric is refused for a loss, by the tasks it allows: (what it is for, what to do).
_REQUIREMENTS: dict[tuple[str, ...], tuple[str, str]] = {
    ("binary",): ("is for binary classification", "loss: binary_crossentropy, or drop {metric!r}"),
    ("multiclass",): (
        "is for multi-class classification",
        "loss: sparse_categorical_crossentropy or categorical_crossentropy",
    ),
    _CLASSIFICATION: ("needs a classification loss", "e.g. mean_absolute_error as the metric"),
}


def refusal(metric: str, loss: str) -> str | None:
    """Why ``metric`` cannot be used with ``loss`` (one problem text), or None if it can."""
    info = METRICS[metric]
    if LOSSES[loss] in info.tasks:
        return None
    what, expected = _REQUIREMENTS[info.tasks]
    return f"{metric!r} {what} (received loss {loss!r}; expected {expected.format(metric=metric)})"


def base_name(key: str) -> str:
    """The metric a monitored or reported key is about: ``val_auc``, ``test.auc`` -> ``auc``."""
    return key.rpartition(".")[2].removeprefix("val_")


def higher_is_better(key: str) -> bool:
    """Whether larger values of ``key`` are better; losses, errors and unknown names are not."""
    info = METRICS.get(base_name(key))
    return info is not None and info.higher_is_better


def resolve_mode(key: str, mode: str) -> Literal["min", "max"]:
    """``mode: auto`` made explicit from the table; ``min`` and ``max`` stay as given."""
    if mode == "auto":
        return "max" if higher_is_better(key) else "min"
    return "max" if mode == "max" else "min"
