"""``training.distribute``: one model trained on every device of this machine.

- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every GPU, or every (logical) CPU
  device when there is no GPU. The model, its optimizer and a resumed checkpoint are made
  under the strategy's scope; Keras' ``fit`` then splits each batch across the replicas and
  adds up their gradients. ``training.batch_size`` stays the global batch: with 2 devices
  and 32, each device sees 16 rows a step, and the model takes the same steps as on one.
- ``data_parallel`` (``training.backend: jax``): ``keras.distribution.DataParallel`` over
  every JAX device; ``keras.distribution.initialize()`` (JAX's multi-process start-up) makes
  the devices of several machines one list, before this runs.
- ``multi_worker_mirrored`` is refused by the config (keras-team/keras#20585).

Nothing here is imported before a command trains; TensorFlow and JAX are imported inside
the functions. :func:`distribution` is what training and resume wrap model building in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


def local_devices(backend: str) -> list[str]:
    """The devices a strategy would use here: every GPU, else every (logical) CPU device."""
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    import tensorflow as tf

    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in found]


def one_device(backend: str) -> list[str]:
    """The device a model without a strategy trains on (the first GPU, else the CPU)."""
    return local_devices(backend)[:1]


@dataclass
class Placement:
    """Where a run's model trains: the device names (for run.json), and the context that
    models are made in (a strategy's scope)."""

    devices: list[str]
    strategy: Any = None  # a tf.distribute strategy, or None

    def building(self) -> contextlib.AbstractContextManager[Any]:
        """Make the model, its optimizer (compile) and a resumed checkpoint in this.

        Only those: Keras' ``fit`` uses the strategy the model was made in by itself, and
        outside the scope ``compute_loss`` (the test split's loss, from its predictions)
        is not divided by the number of replicas as it is inside.
        """
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


@contextlib.contextmanager
def distribution(kind: str | None, backend: str) -> Iterator[Placement]:
    """While the body runs, ``kind``'s distribution is in force (None: one device)."""
    if kind is None:
        yield Placement(one_device(backend))
        return
    devices = local_devices(backend)
    if kind == "mirrored":
        import tensorflow as tf

        yield Placement(devices, tf.distribute.MirroredStrategy(devices=devices))
        return
    import keras  # data_parallel (the config refuses every other value)

    # JAX reads the distribution when fit, evaluate and predict shard each batch: it stays
    # set for the whole run.
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    try:
        yield Placement(devices)
    finally:
        keras.distribution.set_distribution(None)
