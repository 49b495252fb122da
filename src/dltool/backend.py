"""Import Keras (and TensorFlow) quietly, once, only in commands that need it.

TF 2.21 writes absl/C++ start-up lines (oneDNN notices, "could not find cuda
drivers", cuInit errors) straight to file descriptor 2, and no environment
variable silences all of them. We point fd 2 at a temporary file while
TensorFlow starts and replay what it wrote only if the import fails.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from types import ModuleType

from dltool.lazyimports import hidden_from_import


@contextlib.contextmanager
def _stderr_captured(replay: bool = True) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            if replay:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_stderr() -> contextlib.AbstractContextManager[None]:
    """File descriptor 2 into a temporary file while the body runs, dropped afterwards: the
    model converters (TFLite's MLIR passes, tf2onnx) log pages of C++ lines there, and the
    exception they raise says what went wrong."""
    return _stderr_captured(replay=False)


IMPORT_SECONDS: list[float] = []  # how long the first import took (for profile.json)

# What Keras imports at its top only for features dltool never uses: scikit-learn for
# keras.wrappers (SKLearnClassifier and the like) and matplotlib for keras.visualization's
# galleries. They took 1.2 s and 0.8 s of the ~7.7 s that importing Keras took here
# (`python -X importtime`), in every process that trains or predicts.
# While Keras imports they are hidden, and Keras leaves those two features off, as it does
# where the packages are not installed; afterwards they import as usual (dltool's plots and
# data splits use them). One already imported is not hidden: Keras gets it as always.
HIDDEN_FROM_KERAS = ("sklearn", "matplotlib")


def import_keras(backend: str = "tensorflow") -> ModuleType:
    """Return the ``keras`` module, importing it (quietly) with ``backend`` if needed."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ INFO and WARNING lines
    os.environ["KERAS_BACKEND"] = backend  # must be set before the first import of keras
    # The import makes ~400,000 objects and nearly no garbage (about 1,700 objects). Each of
    # the cycle collections it set off walked all it had made so far: about 10 % of the
    # import's CPU (perf), 0.3-0.5 s a process. Off while it runs; the one collection below
    # finds the little there is.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with _stderr_captured(), hidden_from_import(HIDDEN_FROM_KERAS):
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
            tf.config.list_physical_devices()  # device discovery logs now, while captured
            import keras
    finally:
        if collecting:
            gc.enable()
    # TensorFlow and Keras leave about 400,000 objects behind (modules, functions, types).
    # Every full collection walked them all: 0.2 s here, in each trial's clear_session and
    # whenever Python's collector chose to during training. Collected once now (what the
    # first clear_session did anyway) and the survivors frozen, they are never walked again.
    # Process-wide: in a program that imports dltool, what is alive at this moment (its own
    # objects too) is exempt from cycle collection from then on.
    gc.collect()
    gc.freeze()
    IMPORT_SECONDS.append(time.perf_counter() - started)
    return keras


def use_backend(name: str, source: str) -> ModuleType:
    """Import Keras with backend ``name`` (``training.backend``), or say why that cannot be.

    Raises:
        ConfigError: the backend is not installed, or Keras already runs another one in
            this process (a backend is chosen once, before the first import).
    """
    from dltool.errors import ConfigError

    if name != "tensorflow":
        import importlib.util

        if importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"{source}: training.backend: {name!r} is not installed "
                f"(received {name!r}; expected tensorflow, or install it: pip install 'dltool[{name}]')"
            )
    keras_module = sys.modules.get("keras")
    if keras_module is not None:
        running = keras_module.backend.backend()
        if running != name:
            raise ConfigError(
                f"{source}: training.backend: Keras already runs on {running!r} in this process "
                f"(received {name!r}; expected {running!r}, or train this config in its own process)"
            )
        return keras_module
    return import_keras(name)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; all of them where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
