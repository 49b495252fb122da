"""Optimizers and learning-rate schedules: specs that build their own Keras objects.

Like the layer registry, each spec's field names copy the Keras arguments, and
``build`` is the only place the spec becomes a Keras object. Importable without
Keras (``dltool validate`` reads these schemas); Keras is imported inside ``build``.
"""

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import Field

from dltool.metrics import resolve_mode
from dltool.schema import Int, Strict

if TYPE_CHECKING:
    import keras


class _Optimizer(Strict):
    keras_class: ClassVar[str]  # in keras.optimizers
    learning_rate: float = Field(0.001, gt=0.0, le=10.0, description="step size")
    clipnorm: float | None = Field(None, gt=0.0, description="clip each gradient's norm")

    def build(self, learning_rate: Any = None) -> "keras.optimizers.Optimizer":
        """The Keras optimizer; ``learning_rate`` replaces the fixed rate (a schedule)."""
        import keras

        settings = self.model_dump(exclude={"name"}, exclude_none=True)
        if learning_rate is not None:
            settings["learning_rate"] = learning_rate
        optimizer: keras.optimizers.Optimizer = getattr(keras.optimizers, self.keras_class)(
            **settings
        )
        return optimizer


class SGD(_Optimizer):
    keras_class = "SGD"
    name: Literal["sgd"]
    learning_rate: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="try 0.9")
    nesterov: bool = False


class Adam(_Optimizer):
    keras_class = "Adam"
    name: Literal["adam"]
    beta_1: float = Field(0.9, ge=0.0, lt=1.0)
    beta_2: float = Field(0.999, ge=0.0, lt=1.0)
    epsilon: float = Field(1e-7, gt=0.0)
    amsgrad: bool = False


class AdamW(Adam):
    keras_class = "AdamW"
    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(0.004, ge=0.0)


class RMSprop(_Optimizer):
    keras_class = "RMSprop"
    name: Literal["rmsprop"]
    rho: float = Field(0.9, gt=0.0, lt=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    epsilon: float = Field(1e-7, gt=0.0)


Optimizer = Annotated[Union[SGD, Adam, AdamW, RMSprop], Field(discriminator="name")]  # noqa: UP007
OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop"]  # the shorthand ``optimizer: adam``


class _Schedule(Strict):
    """A learning-rate schedule: a rate per batch (inside the optimizer) or a callback."""

    def rate(self, learning_rate: float, total_steps: int) -> Any:
        """The optimizer's learning rate: a Keras schedule, or ``learning_rate`` unchanged."""
        return learning_rate

    def callback(self) -> "keras.callbacks.Callback | None":
        """A callback that changes the rate between epochs, if the schedule is one."""
        return None


class ExponentialDecay(_Schedule):
    type: Literal["exponential_decay"]
    decay_steps: Int = Field(..., ge=1, description="batches per decay_rate step")
    decay_rate: float = Field(..., gt=0.0, le=1.0)
    staircase: bool = False

    def rate(self, learning_rate: float, total_steps: int) -> Any:
        import keras

        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, self.decay_steps, self.decay_rate, staircase=self.staircase
        )


class CosineDecay(_Schedule):
    type: Literal["cosine_decay"]
    decay_steps: Int | None = Field(None, ge=1, description="default: every batch of the run")
    alpha: float = Field(0.0, ge=0.0, le=1.0, description="final fraction of the learning rate")
    warmup_steps: Int = Field(0, ge=0, description="linear warm-up batches")

    def rate(self, learning_rate: float, total_steps: int) -> Any:
        import keras

        warmup = bool(self.warmup_steps)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate,
            decay_steps=self.decay_steps or max(1, total_steps),
            alpha=self.alpha,
            warmup_target=learning_rate if warmup else None,
            warmup_steps=self.warmup_steps,
        )


class ReduceOnPlateau(_Schedule):
    type: Literal["reduce_on_plateau"]
    monitor: str = "val_loss"
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="new rate = rate * factor")
    patience: Int = Field(3, ge=0, description="epochs without improvement")
    min_delta: float = Field(1e-4, ge=0.0)
    min_learning_rate: float = Field(0.0, ge=0.0)

    def callback(self) -> "keras.callbacks.Callback | None":
        import keras

        return keras.callbacks.ReduceLROnPlateau(
            monitor=self.monitor,
            factor=self.factor,
            patience=self.patience,
            min_delta=self.min_delta,
            min_lr=self.min_learning_rate,
            mode=resolve_mode(self.monitor, "auto"),  # Keras' own guess misses auc, top-k
        )


Schedule = Annotated[
    Union[ExponentialDecay, CosineDecay, ReduceOnPlateau],  # noqa: UP007
    Field(discriminator="type"),
]
