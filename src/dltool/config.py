"""The experiment file: pydantic v2 models and :func:`load_config`.

Every model forbids unknown keys. :func:`load_config` reports every problem of a
file at once, one line each: ``FILE: dotted.key: problem (received X; expected Y)``.

Longer than 400 lines because it holds the model and training sections, the rules between
sections (checked even when another part of the file is wrong) and the loading entry points;
each data source's schema lives beside its loader in :mod:`dltool.data`.
"""

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import Field, ValidationError, field_validator, model_validator

from dltool.data.builtin import BuiltinData
from dltool.data.images import ImageFolderData
from dltool.data.shapes import ShapesData
from dltool.data.source import DataPath
from dltool.data.student import StudentData
from dltool.data.tabular import CsvData, NumpyData
from dltool.errors import ConfigError
from dltool.layers import AnyLayer, Dense, Normalization, RegularizerSpec, weight_counts
from dltool.messages import (
    CrossFieldError,
    annotation_at,
    describe_validation_error,
    did_you_mean,
    size_in_bytes,
)
from dltool.metrics import LOSSES, LossName, MetricName, refusal, resolve_mode
from dltool.optimizers import Adam, Optimizer, OptimizerName, Schedule
from dltool.schema import Int, RunName, Strict

if TYPE_CHECKING:
    import keras

    from dltool.rundir import RunDir

# --------------------------------------------------------------------------- data

# Each source's schema sits beside its loader in dltool.data; a spec loads its own data.
DataConfig = Annotated[
    Union[StudentData, CsvData, NumpyData, ImageFolderData, BuiltinData, ShapesData],  # noqa: UP007
    Field(discriminator="source"),
]


# -------------------------------------------------------------------------- model


class ModelConfig(Strict):
    input_shape: list[Annotated[Int, Field(ge=1)]] = Field(
        ..., min_length=1, max_length=4, description="shape of one example, e.g. [3] or [28, 28, 1]"
    )
    layers: list[AnyLayer] = Field(..., min_length=1, description="applied in order")
    init_from: DataPath | None = Field(
        None,
        description="a completed run folder: start from its trained weights (the same layers "
        "and weight shapes; a new optimizer)",
    )

    @model_validator(mode="after")
    def _adapted_normalization_first(self) -> "ModelConfig":
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


class EarlyStopping(Strict):
    monitor: str = Field("val_loss", description="'loss', a metric, or 'val_' + either")
    patience: Int = Field(5, ge=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: bool = True
    start_from_epoch: Int = Field(0, ge=0)

    def callback(self, run: "RunDir") -> "keras.callbacks.Callback":
        import keras

        return keras.callbacks.EarlyStopping(
            monitor=self.monitor,
            patience=self.patience,
            min_delta=self.min_delta,
            mode=resolve_mode(self.monitor, self.mode),  # Keras' own guess misses auc, top-k
            restore_best_weights=self.restore_best_weights,
            start_from_epoch=self.start_from_epoch,
        )


class SaveBest(Strict):
    monitor: str = Field("val_loss", description="quantity that decides the best epoch")
    mode: Literal["auto", "min", "max"] = "auto"

    def callback(self, run: "RunDir") -> "keras.callbacks.Callback":
        from dltool.callbacks import SaveBestModel

        return SaveBestModel(run, self.monitor, resolve_mode(self.monitor, self.mode))


class TrainingConfig(Strict):
    optimizer: Optimizer = Field(
        default_factory=lambda: Adam(name="adam"), description="a name, or {name: ..., ...}"
    )
    loss: LossName
    metrics: list[MetricName] = Field(["accuracy"])  # pydantic copies mutable defaults
    epochs: Int = Field(10, ge=1, le=100_000)
    batch_size: Int = Field(32, ge=1, le=1_000_000)
    early_stopping: EarlyStopping | None = None
    regularization: RegularizerSpec | None = Field(
        None, description="default kernel_regularizer of dense and conv layers"
    )
    learning_rate_schedule: Schedule | None = None
    save_best: SaveBest | None = Field(None, description="keep the best epoch as best.keras")
    checkpoint_seconds: float = Field(
        30.0,
        ge=0.0,
        description="write a resumable checkpoint at most this often (seconds; 0 = every epoch)",
    )
    steps_per_execution: Int = Field(
        0,
        ge=0,
        le=10_000,
        description="batches per call into TensorFlow; 0 = automatic "
        "(32 when an epoch has 256+ batches of at most 4 MB of inputs, else 1)",
    )
    jit_compile: bool = Field(
        False, description="XLA compilation; measured slower on CPU (1.4x MLP, 2.8x CNN)"
    )
    deterministic: bool = Field(
        False,
        description="bit-identical weights and metrics for the same seed, data and machine "
        "(TensorFlow op determinism; slower, see README)",
    )
    profile: bool = Field(False, description="write profile.json: seconds per phase")
    record_internals: bool = Field(
        False,
        description="record inside the model each epoch for report.html: weight histograms, "
        "dead ReLU units, gradient norms per layer; a CNN's filters and feature maps",
    )
    tensorboard: bool = Field(
        False,
        description="write TensorBoard logs into RUN/tensorboard/ (tensorboard --logdir RUN/tensorboard)",
    )
    backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow",
        description="Keras backend; jax is an optional extra (pip install 'dltool[jax]')",
    )
    distribute: Literal["mirrored", "multi_worker_mirrored", "data_parallel"] | None = Field(
        None,
        description="train one model on every local device, batch_size split across them: "
        "mirrored (tf.distribute, backend tensorflow) or data_parallel "
        "(keras.distribution, backend jax); default: one device",
    )

    @field_validator("optimizer", mode="before", json_schema_input_type=Optimizer | OptimizerName)
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


class ExperimentConfig(Strict):
    name: RunName = Field(..., description="run folder prefix; default: the file's name")
    seed: Int | None = Field(
        None, ge=0, le=2**32 - 1, description="default: a random seed, recorded in the run"
    )
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig

    @property
    def task(self) -> str:
        """'binary', 'multiclass' or 'regression', as the loss implies."""
        return LOSSES[self.training.loss]

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        problems = _cross_field_problems(self)
        if problems:
            raise CrossFieldError(problems)
        return self


def _monitor_choices(data: DataConfig, training: TrainingConfig) -> list[str]:
    names = ["loss", *training.metrics]
    if data.validation_split > 0:
        names += [f"val_{name}" for name in names]
    return names


def _cross_field_problems(config: ExperimentConfig) -> list[tuple[str, str]]:
    return _sections_problems(config.data, config.model, config.training)


def _sections_problems(
    data: DataConfig | None, model: ModelConfig | None, training: TrainingConfig | None
) -> list[tuple[str, str]]:
    """Rules between sections, checked for every pair of sections that is valid on its own
    (so a file with a bad key elsewhere still gets these problems in the same report)."""
    problems: list[tuple[str, str]] = []
    if data is not None and training is not None:
        problems += _monitor_problems(data, training)
    if data is not None and model is not None:
        problems += _data_model_problems(data, model)
    if model is not None and training is not None:
        problems += _model_training_problems(model, training)
    if model is not None:
        problems += _model_size_problems(model)
    if training is not None:
        problems += _metric_problems(training)
    return problems


def _monitor_problems(data: DataConfig, training: TrainingConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    choices = _monitor_choices(data, training)
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
    return problems


def _data_model_problems(data: DataConfig, model: ModelConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    expected_shape = data.input_shape()
    if expected_shape is not None and model.input_shape != expected_shape:
        problems.append(("model.input_shape", f"does not match the data (received {model.input_shape}; expected {expected_shape} for data.source {data.source!r})"))  # fmt: skip
    classes = data.class_count()
    last_units = getattr(model.layers[-1], "units", None)
    if classes is not None and classes > 2 and last_units is not None and last_units != classes:
        problems.append((f"model.layers[{len(model.layers) - 1}].units", f"does not match the {classes} classes of the data (received {last_units}; expected {classes})"))  # fmt: skip
    return problems


def _model_training_problems(model: ModelConfig, training: TrainingConfig) -> list[tuple[str, str]]:  # fmt: skip
    problems: list[tuple[str, str]] = []
    last_index = len(model.layers) - 1
    last = model.layers[last_index]
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
    return problems


# Weights, their gradients and two optimizer slots (Adam's) are each one float32 per weight.
MAX_WEIGHTS = 100_000_000  # about 1.6 GB while training; dltool is for small and medium models
BYTES_PER_WEIGHT_TRAINING = 4 * 4


def _model_size_problems(model: ModelConfig) -> list[tuple[str, str]]:
    counts = weight_counts(model.layers, model.input_shape)
    if counts is None or sum(counts) <= MAX_WEIGHTS:
        return []
    total, biggest = sum(counts), max(range(len(counts)), key=counts.__getitem__)
    memory = size_in_bytes(total * BYTES_PER_WEIGHT_TRAINING)
    return [(f"model.layers[{biggest}]", f"the model would have {total:,} weights ({counts[biggest]:,} in this layer), about {memory} to train (expected at most {MAX_WEIGHTS:,} weights)")]  # fmt: skip


def _metric_problems(training: TrainingConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for metric in training.metrics:
        refused = refusal(metric, training.loss)
        if refused:
            problems.append(("training.metrics", refused))
    return problems + _distribute_problems(training)


# What each training.distribute needs (the backend it runs on).
DISTRIBUTE_BACKENDS = {"mirrored": "tensorflow", "data_parallel": "jax"}


def _distribute_problems(training: TrainingConfig) -> list[tuple[str, str]]:
    """A strategy runs on one backend; multi-worker mirrored is broken with Keras 3."""
    distribute = training.distribute
    if distribute is None:
        return []
    if distribute == "multi_worker_mirrored":
        return [
            (
                "training.distribute",
                "multi_worker_mirrored is refused: Keras 3's fit fails under "
                "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585) "
                "(received 'multi_worker_mirrored'; expected mirrored for the devices of one "
                "machine, or data_parallel with training.backend: jax, which "
                "keras.distribution.initialize() extends to several machines)",
            )
        ]
    needed = DISTRIBUTE_BACKENDS[distribute]
    problems = []
    if training.backend != needed:
        problems.append(
            (
                "training.distribute",
                f"{distribute} runs on training.backend {needed} (received backend "
                f"{training.backend!r}; expected training.backend: {needed}"
                + (
                    ", or distribute: data_parallel)"
                    if needed == "tensorflow"
                    else ", or distribute: mirrored)"
                ),
            )
        )
    if training.jit_compile and distribute == "mirrored":
        problems.append(
            (
                "training.jit_compile",
                "XLA compilation clashes with tf.distribute (keras-team/keras#19005) "
                "(received true with distribute: mirrored; expected false)",
            )
        )
    return problems


def _valid_sections(
    raw: dict[str, Any], base_dir: Path | None, error: ValidationError
) -> list[tuple[str, str]]:
    """The cross-section problems of a file whose other problems stopped full validation.

    Unknown keys (already reported) are left out first, and a missing key that has a
    clear stand-in (a choice, a number) is filled in, so that neither hides a problem
    between sections. Each missing key is filled twice, with two different stand-ins:
    only problems found both times (so not caused by a stand-in) and not about a
    stand-in key are reported.
    """
    import copy

    first, second = copy.deepcopy(raw), copy.deepcopy(raw)
    filled: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            for variant in (first, second):
                holder = _holder(variant, loc[:-1])
                if isinstance(holder, dict):
                    holder.pop(loc[-1], None)
        elif item["type"] == "missing" and len(loc) > 1:
            annotation, path = annotation_at(loc, ExperimentConfig)
            stand_ins = _stand_ins(annotation)
            if stand_ins is None:
                continue
            for variant, value in zip((first, second), stand_ins, strict=True):
                holder = _holder(variant, loc[:-1])
                if isinstance(holder, dict):
                    holder[loc[-1]] = value
            filled.append(path)
    problems = _section_problems(first, base_dir)
    if filled:
        again = _section_problems(second, base_dir)
        problems = [
            (key, text)
            for key, text in problems
            if (key, text) in again and not any(key.startswith(path) for path in filled)
        ]
    return problems


def _holder(raw: dict[str, Any], parents: tuple[Any, ...]) -> Any:
    """The mapping or list at ``parents`` in ``raw`` (union tags in the location skipped)."""
    holder: Any = raw
    for part in parents:
        if isinstance(holder, dict) and part not in holder:
            continue  # a union tag in the location (data.student.n_tran)
        try:
            holder = holder[part]
        except (KeyError, IndexError, TypeError):
            return None
    return holder


def _stand_ins(annotation: Any) -> tuple[Any, Any] | None:
    """Two different valid-looking values for a missing key, where its type gives them."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return (choices[0], choices[-1]) if len(choices) > 1 else None
    if annotation is int:
        return 1, 2
    if annotation is float:
        return 0.5, 0.25
    return None


@functools.cache
def _section_validators() -> dict[str, Any]:
    """One validator per section, built once: the models' own are built only when first
    used (``defer_build``), so a new TypeAdapter made the whole schema again, 25 ms a call."""
    from pydantic import TypeAdapter

    return {
        "data": TypeAdapter(DataConfig),
        "model": TypeAdapter(ModelConfig),
        "training": TypeAdapter(TrainingConfig),
    }


def _section_problems(raw: dict[str, Any], base_dir: Path | None) -> list[tuple[str, str]]:
    sections: dict[str, Any] = {}
    for key, adapter in _section_validators().items():
        try:
            sections[key] = adapter.validate_python(raw.get(key), context={"base_dir": base_dir})
        except (ValidationError, ValueError, TypeError):
            sections[key] = None
    return _sections_problems(sections["data"], sections["model"], sections["training"])


# ------------------------------------------------------------------------ loading


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate an experiment file, its ``extends`` chain and ``--set`` overrides.

    Raises:
        ConfigError: with one line per problem, every problem of the file at once.
    """
    from dltool.overrides import apply_assignment, read_experiment

    path = Path(path)
    raw = read_experiment(path)
    raw.setdefault("name", _default_name(path))
    origins = {apply_assignment(raw, text): text for text in overrides or []}
    return validate_config(raw, source=str(path), base_dir=path.parent, origins=origins)


def validate_config(
    raw: dict[str, Any],
    source: str,
    base_dir: Path | None = None,
    origins: dict[str, str] | None = None,
) -> ExperimentConfig:
    """Validate an already-parsed mapping.

    Args:
        raw: the experiment as plain data.
        source: prefixes every error line (usually the file's path).
        base_dir: folder that relative data paths are relative to (the file's folder).
        origins: dotted key -> the ``--set`` that changed it; problems at or under
            such a key name the ``--set`` instead of the file.
    """
    try:
        return ExperimentConfig.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as error:
        problems = describe_validation_error(error, ExperimentConfig)
        if not any(
            isinstance((e.get("ctx") or {}).get("error"), CrossFieldError)
            for e in error.errors(include_url=False)
        ):
            problems += _valid_sections(raw, base_dir, error)  # fmt: skip
        lines = []
        for key, text in problems:
            origin = next(
                (f"--set {o}" for k, o in (origins or {}).items() if _related(key, k)),
                source,
            )
            lines.append(f"{origin}: {key}: {text}")
        raise ConfigError(*lines) from None


def _related(key: str, override: str) -> bool:
    """Whether a problem at ``key`` comes from the ``--set`` of ``override``: at, under or
    above it (``--set trainin.epochs=5`` is wrong at ``trainin``)."""
    return any(
        a == b or a.startswith((f"{b}.", f"{b}[")) for a, b in ((key, override), (override, key))
    )


def _default_name(path: Path) -> str:
    """The file name without extension, made safe for a folder name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "run"
    return name[:80]


def resolved_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config with every default filled in, as plain YAML-ready values."""
    return config.model_dump(mode="json")


def with_name(config: ExperimentConfig, name: str) -> ExperimentConfig:
    """``config`` renamed, with the new name validated like the file's (source ``--name``)."""
    # exclude_unset: the keys the file left out stay defaults (the report marks them)
    return validate_config({**config.model_dump(exclude_unset=True), "name": name}, source="--name")


def defaulted_keys(config: ExperimentConfig) -> list[str]:
    """The dotted keys the file left out, so that a default filled them in (``training.epochs``;
    a whole section such as ``training.early_stopping`` when it was left out entirely)."""
    from pydantic import BaseModel

    keys: list[str] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            key = f"{prefix}{name}"
            if name not in model.model_fields_set:
                keys.append(key)
                continue
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{key}.")
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        walk(item, f"{key}[{index}].")

    walk(config, "")
    return keys
