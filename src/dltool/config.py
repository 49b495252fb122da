"""The experiment file: pydantic v2 models and :func:`load_config`.

Every model forbids unknown keys. :func:`load_config` reports every problem of a
file at once, one line each: ``FILE: dotted.key: problem (received X; expected Y)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dltool.errors import ConfigError
from dltool.layers import AnyLayer, Dense, Normalization, RegularizerSpec
from dltool.messages import CrossFieldError, did_you_mean, format_validation_error
from dltool.yamlio import YamlProblem, read_yaml_mapping

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- data


class StudentData(_Strict):
    """The curriculum's synthetic students: age, hours studied, previous score -> pass/fail."""

    source: Literal["student"]
    n_train: int = Field(1000, ge=1, le=10_000_000, description="training rows")
    n_test: int = Field(500, ge=1, le=10_000_000, description="test rows")
    labels: Literal["random", "rule"] = Field(
        "random",
        description="'random': exactly the notebook (nothing to learn); "
        "'rule': realistic columns and a learnable noisy pass/fail rule",
    )
    validation_split: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="fraction of training rows held out (after a seeded shuffle)",
    )


DataConfig = Annotated[Union[StudentData], Field(discriminator="source")]  # noqa: UP007


# -------------------------------------------------------------------------- model


class ModelConfig(_Strict):
    input_shape: list[Annotated[int, Field(ge=1)]] = Field(
        ..., min_length=1, max_length=4, description="shape of one example, e.g. [3] or [28, 28, 1]"
    )
    layers: list[AnyLayer] = Field(..., min_length=1, description="applied in order")

    @model_validator(mode="after")
    def _adapted_normalization_first(self) -> ModelConfig:
        # An adapted Normalization sees the training data through the layers before
        # it; those must not have weights yet to learn, or the statistics are noise.
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Normalization) and layer.needs_adapt:
                learners = [i for i in range(index) if self.layers[i].has_weights]
                if learners:
                    raise ValueError(
                        f"layers[{index}] (normalization without mean/variance) is adapted on "
                        f"the training data, so it must come before layers with weights "
                        f"(received it after layers[{learners[0]}]; move it up)"
                    )
        return self


# ----------------------------------------------------------------------- training


class _Optimizer(_Strict):
    learning_rate: float = Field(0.001, gt=0.0, le=10.0, description="step size")
    clipnorm: float | None = Field(None, gt=0.0, description="clip each gradient's norm")


class SGD(_Optimizer):
    name: Literal["sgd"]
    learning_rate: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="try 0.9")
    nesterov: bool = False


class Adam(_Optimizer):
    name: Literal["adam"]
    beta_1: float = Field(0.9, ge=0.0, lt=1.0)
    beta_2: float = Field(0.999, ge=0.0, lt=1.0)
    epsilon: float = Field(1e-7, gt=0.0)
    amsgrad: bool = False


class AdamW(Adam):
    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(0.004, ge=0.0)


class RMSprop(_Optimizer):
    name: Literal["rmsprop"]
    rho: float = Field(0.9, gt=0.0, lt=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    epsilon: float = Field(1e-7, gt=0.0)


Optimizer = Annotated[Union[SGD, Adam, AdamW, RMSprop], Field(discriminator="name")]  # noqa: UP007
OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop")


class ExponentialDecay(_Strict):
    type: Literal["exponential_decay"]
    decay_steps: int = Field(..., ge=1, description="batches per decay_rate step")
    decay_rate: float = Field(..., gt=0.0, le=1.0)
    staircase: bool = False


class CosineDecay(_Strict):
    type: Literal["cosine_decay"]
    decay_steps: int | None = Field(None, ge=1, description="default: every batch of the run")
    alpha: float = Field(0.0, ge=0.0, le=1.0, description="final fraction of the learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up batches")


class ReduceOnPlateau(_Strict):
    type: Literal["reduce_on_plateau"]
    monitor: str = "val_loss"
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="new rate = rate * factor")
    patience: int = Field(3, ge=0, description="epochs without improvement")
    min_delta: float = Field(1e-4, ge=0.0)
    min_learning_rate: float = Field(0.0, ge=0.0)


Schedule = Annotated[
    Union[ExponentialDecay, CosineDecay, ReduceOnPlateau],  # noqa: UP007
    Field(discriminator="type"),
]


class EarlyStopping(_Strict):
    monitor: str = Field("val_loss", description="'loss', a metric, or 'val_' + either")
    patience: int = Field(5, ge=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: bool = True
    start_from_epoch: int = Field(0, ge=0)


class SaveBest(_Strict):
    monitor: str = Field("val_loss", description="quantity that decides the best epoch")
    mode: Literal["auto", "min", "max"] = "auto"


Loss = Literal[
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
    "huber",
]
Metric = Literal[
    "accuracy",
    "auc",
    "precision",
    "recall",
    "mean_squared_error",
    "mean_absolute_error",
    "root_mean_squared_error",
]
CLASSIFICATION_LOSSES = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
)
BINARY_ONLY_METRICS = ("auc", "precision", "recall")


class TrainingConfig(_Strict):
    optimizer: Optimizer = Field(
        default_factory=lambda: Adam(name="adam"), description="a name, or {name: ..., ...}"
    )
    loss: Loss
    metrics: list[Metric] = Field(["accuracy"])  # pydantic copies mutable defaults
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=1_000_000)
    early_stopping: EarlyStopping | None = None
    regularization: RegularizerSpec | None = Field(
        None, description="default kernel_regularizer of dense and conv layers"
    )
    learning_rate_schedule: Schedule | None = None
    save_best: SaveBest | None = Field(None, description="keep the best epoch as best.keras")

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, value: list[str]) -> list[str]:
        duplicates = sorted({m for m in value if value.count(m) > 1})
        if duplicates:
            raise ValueError(f"each metric once (received {', '.join(duplicates)} twice)")
        return value


# ---------------------------------------------------------------------- experiment


class ExperimentConfig(_Strict):
    name: str = Field(..., pattern=RUN_NAME_PATTERN, description="run folder prefix")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="default: a random seed, recorded in the run"
    )
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        problems = _cross_field_problems(self)
        if problems:
            raise CrossFieldError(problems)
        return self


def _monitor_choices(config: ExperimentConfig) -> list[str]:
    names = ["loss", *config.training.metrics]
    if config.data.validation_split > 0:
        names += [f"val_{name}" for name in names]
    return names


def _cross_field_problems(config: ExperimentConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    training = config.training
    choices = _monitor_choices(config)
    monitored = [
        ("training.early_stopping.monitor", training.early_stopping),
        ("training.save_best.monitor", training.save_best),
        ("training.learning_rate_schedule.monitor", training.learning_rate_schedule),
    ]
    for key, section in monitored:
        monitor = getattr(section, "monitor", None)
        if monitor is None or monitor in choices:
            continue
        if monitor.startswith("val_") and monitor[4:] in choices:
            text = (
                f"needs validation data (received {monitor!r} with data.validation_split=0; "
                f"expected data.validation_split > 0, or monitor: {monitor[4:]!r})"
            )
        else:
            text = f"unknown quantity{did_you_mean(monitor, choices)} (received {monitor!r}; expected one of {', '.join(choices)})"
        problems.append((key, text))

    last_index = len(config.model.layers) - 1
    last = config.model.layers[last_index]
    loss = training.loss
    if isinstance(last, Dense):
        where = f"model.layers[{last_index}].units"
        if loss == "binary_crossentropy" and last.units != 1:
            problems.append((where, f"binary_crossentropy needs 1 output unit with sigmoid (received {last.units}; expected 1, or loss: sparse_categorical_crossentropy for {last.units} classes)"))  # fmt: skip
        if (
            loss in ("sparse_categorical_crossentropy", "categorical_crossentropy")
            and last.units < 2
        ):
            problems.append((where, f"{loss} needs one output unit per class (received {last.units}; expected >= 2 with softmax, or loss: binary_crossentropy for two classes)"))  # fmt: skip
    for metric in training.metrics:
        if metric in BINARY_ONLY_METRICS and loss != "binary_crossentropy":
            problems.append(("training.metrics", f"{metric!r} is for binary classification (received loss {loss!r}; expected loss: binary_crossentropy, or drop {metric!r})"))  # fmt: skip
        if metric == "accuracy" and loss not in CLASSIFICATION_LOSSES:
            problems.append(("training.metrics", f"'accuracy' needs a classification loss (received loss {loss!r}; expected e.g. mean_absolute_error as the metric)"))  # fmt: skip
    return problems


# ------------------------------------------------------------------------ loading


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment file.

    Raises:
        ConfigError: with one line per problem, every problem of the file at once.
    """
    path = Path(path)
    try:
        raw = read_yaml_mapping(path)
    except YamlProblem as problem:
        raise ConfigError(f"{path}: {problem}") from problem
    raw.setdefault("name", _default_name(path))
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str) -> ExperimentConfig:
    """Validate an already-parsed mapping; ``source`` prefixes every error line."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(*format_validation_error(error, source, ExperimentConfig)) from None


def _default_name(path: Path) -> str:
    """The file name without extension, made safe for a folder name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "run"
    return name[:80]


def resolved_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config with every default filled in, as plain YAML-ready values."""
    return config.model_dump(mode="json")


def with_name(config: ExperimentConfig, name: str) -> ExperimentConfig:
    """``config`` renamed, with the new name validated like the file's (source ``--name``)."""
    return validate_config({**config.model_dump(), "name": name}, source="--name")
