"""Build and compile the Keras model an experiment describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dltool.backend import import_keras

import_keras()  # quiet TensorFlow's start-up before the first ``import keras``

import keras  # noqa: E402

from dltool.config import ExperimentConfig  # noqa: E402
from dltool.data.rows import Rows  # noqa: E402
from dltool.errors import ConfigError, InputError, RunDirError  # noqa: E402
from dltool.layers import BuildContext, Normalization  # noqa: E402
from dltool.metrics import METRICS  # noqa: E402
from dltool.pipelines import auto_steps_per_execution, make_pipeline  # noqa: E402
from dltool.rundir import atomic_path  # noqa: E402


def build_model(
    config: ExperimentConfig,
    x_train: np.ndarray | Rows,
    source: str,
    normalize_inputs: bool = False,
) -> keras.Sequential:
    """A ``keras.Sequential`` with every layer of ``config.model.layers``, built and adapted.

    With ``normalize_inputs`` an adapted Normalization layer comes first (``data.normalize``).

    Normalization layers without fixed statistics are adapted on ``x_train`` as it
    reaches them, so the saved model takes raw values.

    Raises:
        ConfigError: a layer cannot take the output of the one before it (``source``
            prefixes the message, as for any config problem).
    """
    context = BuildContext(default_regularizer=config.training.regularization)
    model = keras.Sequential(name=config.name.replace(".", "_").replace("-", "_"))
    model.add(keras.Input(shape=tuple(config.model.input_shape)))
    first = config.model.layers[0]
    if normalize_inputs and not (isinstance(first, Normalization) and first.needs_adapt):
        # data.normalize (csv): standardize raw columns inside the model, so the saved
        # model takes raw values; statistics come from the training split only.
        normalization = keras.layers.Normalization(axis=-1)
        normalization.adapt(_adapt_data(x_train))
        model.add(normalization)
    for index, spec in enumerate(config.model.layers):
        layer = spec.build(context)
        shape = model.output_shape if model.layers else (None, *config.model.input_shape)
        try:
            model.add(layer)
        except (ValueError, TypeError) as error:
            reason = str(error).strip().splitlines()[0]
            raise ConfigError(
                f"{source}: model.layers[{index}]: a {spec.type} layer cannot take the output "
                f"of the layer before it (received shape {shape}; expected what Keras accepts: "
                f"{reason})"
            ) from error
        if isinstance(spec, Normalization) and spec.needs_adapt:
            before = keras.Sequential(model.layers[:-1]) if len(model.layers) > 1 else None
            layer.adapt(_adapt_data(x_train, before))
    return model


def _adapt_data(x: np.ndarray | Rows, before: keras.Sequential | None = None) -> Any:
    """What a Normalization layer adapts on: ``x`` (through the layers ``before`` it);
    Rows stream in batches, so that the statistics take one pass and no copy."""
    if isinstance(x, Rows):
        batches = make_pipeline(x, None, max(1, ADAPT_BATCH_BYTES // x.example_bytes))
        if before is None:
            return batches
        import tensorflow as tf

        def through_before() -> Any:  # the layers run outside tf.data: any Keras backend
            for batch in batches:
                yield np.asarray(before.predict_on_batch(batch), dtype="float32")

        spec = tf.TensorSpec((None, *before.output_shape[1:]), tf.float32)
        return tf.data.Dataset.from_generator(through_before, output_signature=spec)
    sample = before.predict(x, verbose=0) if before else x
    return np.asarray(sample, dtype="float32")


ADAPT_BATCH_BYTES = 8_000_000  # read per batch when adapting on streamed rows


def make_optimizer(config: ExperimentConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer, its rate set by the learning-rate schedule if one is set."""
    training = config.training
    rate: Any = training.optimizer.learning_rate
    if training.learning_rate_schedule is not None:
        total_steps = training.epochs * steps_per_epoch
        rate = training.learning_rate_schedule.rate(rate, total_steps)
    return training.optimizer.build(rate)


def make_metrics(config: ExperimentConfig) -> list[Any]:
    """Keras metric objects for ``training.metrics``, named as in the config."""
    return [METRICS[name].build(config.training.loss) for name in config.training.metrics]


def steps_per_execution(config: ExperimentConfig, steps_per_epoch: int) -> int:
    """``training.steps_per_execution``, with 0 resolved by the epoch's length and batch size."""
    chosen = config.training.steps_per_execution
    if chosen:
        return chosen
    return auto_steps_per_execution(steps_per_epoch, config.training.batch_size, config.model.input_shape)  # fmt: skip


def compile_model(model: keras.Sequential, config: ExperimentConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=config.training.loss,
        metrics=make_metrics(config),
        steps_per_execution=steps_per_execution(config, steps_per_epoch),
        jit_compile=config.training.jit_compile,
    )


def build_training_state(model: keras.Model, x: np.ndarray | Rows, y: np.ndarray) -> None:
    """Create the compiled metrics' and the optimizer's variables before ``fit`` traces its step.

    Without a distribution strategy Keras creates them inside the first trace of the train
    step, and TensorFlow, seeing variables created, traces the whole step a second time:
    built here from the shapes of one batch, the step is traced once (a second less per fit
    of a small model on a 2-core machine; the same weights, the same results).
    """
    if keras.backend.backend() != "tensorflow" or len(y) == 0:
        return  # the other backends' fit builds them first anyway
    symbolic_build = getattr(model, "_symbolic_build", None)  # what fit does under a strategy
    if symbolic_build is None or getattr(model, "_distribute_strategy", None) is not None:
        return  # under a strategy fit builds them itself, in the strategy's scope
    shape = (1, *x.shape[1:])
    try:
        symbolic_build(data_batch=(np.zeros(shape, dtype="float32"), np.asarray(y[:1]), None))
    except TypeError:  # a Keras whose private method changed: fit builds them, tracing twice
        return


def save_model(model: keras.Model, target: Path) -> None:
    """``model.save`` opens its target directly; a failed save must not destroy the old file.

    Raises:
        RunDirError: the file could not be written (disk full, permissions).
    """
    try:
        with atomic_path(target, suffix=".keras") as temporary:
            model.save(temporary)
    except OSError as error:
        raise RunDirError(f"{target}: cannot write: {error.strerror or error}") from error


def init_from_run(model: keras.Model, folder: Path, source: str) -> None:
    """Start ``model`` from a completed run's trained weights (``model.init_from``).

    Raises:
        ConfigError: the run is not a completed run, or its weights do not fit ``model``
            (names the first layer whose weights differ in count or shape).
    """
    from dltool.rundir import MODEL, RunDir

    key = f"{source}: model.init_from"
    try:
        RunDir.open(folder).require_completed()
        trained = load_trained_model(folder / MODEL)
    except InputError as error:
        raise ConfigError(f"{key}: {error.lines[0]}") from error
    ours = [layer for layer in model.layers if layer.weights]
    theirs = [layer for layer in trained.layers if layer.weights]
    if len(ours) != len(theirs):
        raise ConfigError(
            f"{key}: {folder} has {len(theirs)} layers with weights, this model "
            f"{len(ours)} (expected the same layers)"
        )
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        shapes = [list(w.shape) for w in mine.weights]
        found = [list(w.shape) for w in other.weights]
        if shapes != found:
            raise ConfigError(
                f"{key}: layer {index + 1} with weights ({mine.name}) has weight shapes "
                f"{shapes} here and {found} in {folder} (expected the same shapes)"
            )
    for mine, other in zip(ours, theirs, strict=True):
        mine.set_weights(other.get_weights())


SEED_STATE = "seed_generator_state"  # Keras' name of a random layer's (dropout's) generator state


def seed_states(model: keras.Model) -> list[list[int]]:
    """The state of each random layer's seed generator (dropout, augmentation), in order.

    model.keras does not keep them: a run continued from it would draw dropout masks
    afresh. run.json records them, and :func:`restore_seed_states` puts them back.
    """
    return [
        [int(n) for n in keras.ops.convert_to_numpy(v).tolist()]
        for v in model.variables
        if v.name == SEED_STATE
    ]


def restore_seed_states(model: keras.Model, states: Any) -> None:
    """Put back the generator states :func:`seed_states` gave (ignored if they do not fit)."""
    variables = [v for v in model.variables if v.name == SEED_STATE]
    if not isinstance(states, list) or len(states) != len(variables):
        return
    for variable, state in zip(variables, states, strict=True):
        if isinstance(state, list) and len(state) == 2 and all(isinstance(n, int) for n in state):
            variable.assign(np.asarray(state, dtype=variable.dtype))


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda text, line_break=False: lines.append(text))
    return "\n".join(lines).rstrip() + "\n"


def load_trained_model(path: Path) -> keras.Model:
    """Load a ``.keras`` file in Keras safe mode, always; refuse what safe mode refuses.

    Raises:
        InputError: not a .keras archive, an HDF5 file, or code safe mode will not run.
    """
    import zipfile

    if path.suffix.lower() in (".h5", ".hdf5"):
        raise InputError(
            f"{path}: HDF5 models are refused (older Keras ignored safe mode for them); "
            "use a .keras file saved by dltool"
        )
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a .keras model archive (truncated, or another kind of file)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:  # is_zipfile reads only the end record
        raise InputError(f"{path}: not a .keras model archive (truncated or corrupt)") from error
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise InputError(
                f"{path}: refused: the archive has an entry that points outside it ({name!r}); "
                "a .keras file saved by Keras never does"
            )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, KeyError, zipfile.BadZipFile, OSError) as error:
        text = " ".join(str(error).split())
        if "Lambda" in text:
            reason = "it contains a Lambda layer (Python code), which safe mode refuses to run"
        elif "unsafe" in text.lower() or "safe_mode" in text:
            reason = f"Keras safe mode refused it: {text.split('. ')[0]}"
        else:
            reason = f"Keras could not load it: {text[:200]}"
        raise InputError(f"{path}: {reason}") from error


def layer_rows(model: keras.Model) -> list[dict[str, Any]]:
    """Each layer's name, type, output shape and parameter count, for run.json and the report."""
    rows = []
    for layer in model.layers:
        try:
            shape: Any = list(layer.output.shape)
        except (AttributeError, ValueError):  # a layer never called has no output yet
            shape = None
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": shape,
                "params": int(layer.count_params()),
            }
        )
    return rows
