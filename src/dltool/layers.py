"""The layer registry: plain names in YAML -> spec classes -> Keras layers.

Each spec is a pydantic model whose field names copy the Keras argument names
(``units``, ``activation``, ``rate``, ``kernel_regularizer``), so a YAML layer reads
like the Keras call it becomes. :data:`LAYERS` is a closed allowlist: a config
can only name layers listed here, never a Python import path.

This module must stay importable without Keras (``dltool validate`` and
``dltool layers`` use it); Keras is imported inside :meth:`LayerSpec.build`.

Adding a layer = one spec class (its fields, ``keras_class`` and ``example``) + one
:data:`LAYERS` entry; the registry test builds every entry from its example. A spec
whose arguments differ from its fields overrides :meth:`LayerSpec.arguments`.

Longer than 400 lines because it is a table: one short spec class per layer type.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from dltool.schema import Int, Strict

if TYPE_CHECKING:
    import keras

# Keras' built-in activations (keras.activations), by their Keras names.
Activation = Literal[
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish",
    "mish", "sigmoid", "hard_sigmoid", "tanh", "softmax", "log_softmax", "softplus",
    "softsign", "exponential",
]  # fmt: skip

Initializer = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
    "zeros", "ones",
]  # fmt: skip

Padding = Literal["valid", "same"]


def _to_pair(value: Any) -> Any:
    """Accept ``3`` as ``[3, 3]`` for kernel sizes, strides and pool sizes, like Keras."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list):  # YAML has no tuples; the schema is strict about types
        return tuple(value)
    return value


def _to_number(value: Any) -> Any:
    """Accept a fraction such as ``1/255`` for scale factors (YAML has no arithmetic)."""
    if isinstance(value, str) and "/" in value:
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            return value  # let pydantic report it as "not a number"
    return value


Shape = tuple[int, ...]  # one example's shape, without the batch axis


class ShapeUnknown(Exception):
    """The shape cannot be followed without Keras (Keras reports the mistake when it builds)."""


def _window(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a convolution or pooling window along one axis (Keras' rule)."""
    if padding == "same":
        return math.ceil(size / stride)
    if size < kernel:
        raise ShapeUnknown
    return (size - kernel) // stride + 1


def _axis_size(shape: Shape, axis: int) -> int:
    """The size of a Keras ``axis`` (which counts the batch axis as 0) of one example."""
    if axis < 0 and -axis <= len(shape):
        return shape[axis]
    if 1 <= axis <= len(shape):
        return shape[axis - 1]
    raise ShapeUnknown


def _image(shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ShapeUnknown
    return shape


# What a file may write for these (the JSON Schema editors complete from says so too).
_Size = Annotated[Int, Field(ge=1)]
FRACTION_PATTERN = r"^\s*-?[0-9]+(\.[0-9]+)?\s*/\s*[0-9]+(\.[0-9]+)?\s*$"  # 1/255
Pair = Annotated[tuple[_Size, _Size], BeforeValidator(_to_pair, json_schema_input_type=_Size | tuple[_Size, _Size])]  # fmt: skip
Number = Annotated[float, BeforeValidator(_to_number, json_schema_input_type=float | Annotated[str, Field(pattern=FRACTION_PATTERN)])]  # fmt: skip


class _Frozen(Strict):
    """A layer spec is a value: hashable, never changed after validation."""

    model_config = ConfigDict(frozen=True)  # extra="forbid" comes from Strict


class RegularizerSpec(_Frozen):
    """Weight penalty added to the loss: ``l1 * sum(|w|) + l2 * sum(w**2)``."""

    l1: float = Field(0.0, ge=0.0, description="L1 factor (sparsity); try 1.0e-5 to 1.0e-3")
    l2: float = Field(0.0, ge=0.0, description="L2 factor (weight decay); try 1.0e-4 to 1.0e-2")

    def to_keras(self) -> Any:
        import keras

        if self.l1 == 0 and self.l2 == 0:
            return None
        return keras.regularizers.L1L2(l1=self.l1, l2=self.l2)


@dataclass(frozen=True)
class BuildContext:
    """What a layer needs from outside its own spec."""

    default_regularizer: RegularizerSpec | None = None  # training.regularization


class LayerSpec(_Frozen):
    """Base class of every registry entry."""

    type: str
    summary: ClassVar[str] = ""
    has_weights: ClassVar[bool] = False  # True for layers that learn (matters for adapt order)
    # A minimal valid YAML mapping and an input shape it accepts (used by docs and tests).
    example: ClassVar[dict[str, Any]] = {}
    example_input_shape: ClassVar[tuple[int, ...]] = (8,)
    keras_class: ClassVar[str] = ""  # the ``keras.layers`` class this spec builds
    augmentation: ClassVar[bool] = False  # changes inputs only while training (random_*)

    def arguments(self, context: BuildContext) -> dict[str, Any]:
        """The Keras arguments: every field but ``type`` (field names are Keras' own)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "type"}

    def build(self, context: BuildContext) -> "keras.layers.Layer":
        import keras

        return getattr(keras.layers, self.keras_class)(**self.arguments(context))

    def output_shape(self, shape: Shape) -> Shape:
        """One example's shape after this layer. Raises :class:`ShapeUnknown`."""
        return shape

    def weight_count(self, shape: Shape) -> int:
        """The numbers this layer stores for an input of ``shape`` (Keras' ``count_params``)."""
        return 0


class _KernelRegularized(LayerSpec):
    kernel_regularizer: RegularizerSpec | None = Field(
        None, description="weight penalty for this layer; default: training.regularization"
    )

    def _regularizer(self, context: BuildContext) -> Any:
        spec = self.kernel_regularizer or context.default_regularizer
        return spec.to_keras() if spec else None

    def arguments(self, context: BuildContext) -> dict[str, Any]:
        return {**super().arguments(context), "kernel_regularizer": self._regularizer(context)}


class Dense(_KernelRegularized):
    type: Literal["dense"]
    units: Int = Field(..., ge=1, description="number of neurons")
    activation: Activation | None = Field(None, description="none = linear")
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"

    summary = "fully connected layer: activation(x @ W + b)"
    has_weights = True
    example = {"type": "dense", "units": 4, "activation": "relu"}

    keras_class = "Dense"

    def output_shape(self, shape: Shape) -> Shape:
        return (*shape[:-1], self.units)

    def weight_count(self, shape: Shape) -> int:
        return shape[-1] * self.units + (self.units if self.use_bias else 0)


class Dropout(LayerSpec):
    type: Literal["dropout"]
    rate: float = Field(..., ge=0.0, lt=1.0, description="fraction of inputs zeroed in training")

    summary = "randomly zeroes a fraction of inputs while training (regularization)"
    example = {"type": "dropout", "rate": 0.5}

    keras_class = "Dropout"


class ActivationLayer(LayerSpec):
    type: Literal["activation"]
    activation: Activation

    summary = "applies an activation function on its own"
    example = {"type": "activation", "activation": "relu"}

    keras_class = "Activation"


class BatchNormalization(LayerSpec):
    type: Literal["batch_normalization"]
    momentum: float = Field(0.99, gt=0.0, lt=1.0, description="for the moving mean/variance")
    epsilon: float = Field(0.001, gt=0.0)
    axis: Int = -1

    summary = "normalizes activations per batch; learns scale and shift"
    has_weights = True
    example = {"type": "batch_normalization"}

    keras_class = "BatchNormalization"

    def weight_count(self, shape: Shape) -> int:
        return 4 * _axis_size(shape, self.axis)  # gamma, beta, moving mean, moving variance


class Flatten(LayerSpec):
    type: Literal["flatten"]

    summary = "flattens each example to one dimension (e.g. after convolutions)"
    example = {"type": "flatten"}
    example_input_shape = (4, 4, 2)

    keras_class = "Flatten"

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


class Conv2D(_KernelRegularized):
    type: Literal["conv2d"]
    filters: Int = Field(..., ge=1, description="number of feature maps")
    kernel_size: Pair = Field(..., description="3 or [3, 3]")
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    activation: Activation | None = None
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"

    summary = "2-D convolution over height x width x channels images"
    has_weights = True
    example = {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"}
    example_input_shape = (8, 8, 1)

    keras_class = "Conv2D"

    def output_shape(self, shape: Shape) -> Shape:
        height, width, _ = _image(shape)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return (
            _window(height, kh, sh, self.padding),
            _window(width, kw, sw, self.padding),
            self.filters,
        )

    def weight_count(self, shape: Shape) -> int:
        channels = _image(shape)[2]
        kh, kw = self.kernel_size
        return kh * kw * channels * self.filters + (self.filters if self.use_bias else 0)


class _Pooling2D(LayerSpec):
    pool_size: Pair = Field((2, 2), description="2 or [2, 2]")
    strides: Pair | None = Field(None, description="default: pool_size")
    padding: Padding = "valid"
    example_input_shape = (8, 8, 1)

    def output_shape(self, shape: Shape) -> Shape:
        height, width, channels = _image(shape)
        (ph, pw) = self.pool_size
        (sh, sw) = self.strides or self.pool_size
        return (
            _window(height, ph, sh, self.padding),
            _window(width, pw, sw, self.padding),
            channels,
        )


class MaxPooling2D(_Pooling2D):
    type: Literal["max_pooling2d"]
    summary = "keeps the maximum of each pool_size window"
    example = {"type": "max_pooling2d", "pool_size": 2}

    keras_class = "MaxPooling2D"


class AveragePooling2D(_Pooling2D):
    type: Literal["average_pooling2d"]
    summary = "keeps the mean of each pool_size window"
    example = {"type": "average_pooling2d", "pool_size": 2}

    keras_class = "AveragePooling2D"


class GlobalAveragePooling2D(LayerSpec):
    type: Literal["global_average_pooling2d"]
    summary = "averages each feature map to one number (a light alternative to flatten)"
    example = {"type": "global_average_pooling2d"}
    example_input_shape = (8, 8, 3)

    keras_class = "GlobalAveragePooling2D"

    def output_shape(self, shape: Shape) -> Shape:
        return (_image(shape)[2],)


class Reshape(LayerSpec):
    type: Literal["reshape"]
    target_shape: list[Annotated[Int, Field(ge=-1)]] = Field(
        ..., min_length=1, description="shape per example, without the batch; one -1 allowed"
    )

    summary = "reshapes each example, e.g. [784] -> [28, 28, 1]"
    example = {"type": "reshape", "target_shape": [2, 4, 1]}

    @model_validator(mode="after")
    def _check_shape(self) -> "Reshape":
        if 0 in self.target_shape or self.target_shape.count(-1) > 1:
            raise ValueError(
                f"target_shape needs positive sizes and at most one -1 "
                f"(received {self.target_shape})"
            )
        return self

    keras_class = "Reshape"

    def output_shape(self, shape: Shape) -> Shape:
        total, known = math.prod(shape), -math.prod(self.target_shape)
        target = [total // known if size == -1 else size for size in self.target_shape]
        if (-1 in self.target_shape and total % known) or math.prod(target) != total:
            raise ShapeUnknown
        return tuple(target)


class Rescaling(LayerSpec):
    type: Literal["rescaling"]
    scale: Number = Field(..., description="multiplier; fractions such as 1/255 are allowed")
    offset: Number = 0.0

    summary = "x * scale + offset, e.g. scale: 1/255 maps pixels to [0, 1]"
    example = {"type": "rescaling", "scale": "1/255"}

    keras_class = "Rescaling"


class Normalization(LayerSpec):
    type: Literal["normalization"]
    axis: Int | None = Field(-1, description="feature axis kept separate; -1 = last")
    mean: list[float] | None = Field(None, description="fixed per-feature mean; default: adapted")
    variance: list[float] | None = Field(None, description="fixed variance; default: adapted")

    summary = "(x - mean) / sqrt(variance); adapted on the training data unless given"
    example = {"type": "normalization"}

    @model_validator(mode="after")
    def _mean_and_variance_together(self) -> "Normalization":
        if (self.mean is None) != (self.variance is None):
            raise ValueError("give both mean and variance, or neither (to adapt on the data)")
        if self.variance is not None and any(v < 0 for v in self.variance):
            raise ValueError(f"variance must be >= 0 (received {self.variance})")
        return self

    @property
    def needs_adapt(self) -> bool:
        return self.mean is None

    keras_class = "Normalization"

    def weight_count(self, shape: Shape) -> int:
        if not self.needs_adapt:
            return 0  # a fixed mean and variance are constants, not weights
        if self.axis is None:
            return 3  # one mean, one variance, the count of examples seen
        return 2 * _axis_size(shape, self.axis) + 1


class GlobalMaxPooling2D(LayerSpec):
    type: Literal["global_max_pooling2d"]
    summary = "keeps the maximum of each feature map"
    example = {"type": "global_max_pooling2d"}
    example_input_shape = (8, 8, 3)

    keras_class = "GlobalMaxPooling2D"

    def output_shape(self, shape: Shape) -> Shape:
        return (_image(shape)[2],)


class SeparableConv2D(Conv2D):
    type: Literal["separable_conv2d"]  # type: ignore[assignment]
    summary = "depthwise then pointwise convolution: fewer weights than conv2d"
    example = {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"}

    keras_class = "SeparableConv2D"

    def arguments(self, context: BuildContext) -> dict[str, Any]:
        arguments = super().arguments(context)
        initializer = arguments.pop("kernel_initializer")
        del arguments["kernel_regularizer"]
        return {
            **arguments,
            "depthwise_initializer": initializer,
            "pointwise_initializer": initializer,
            "pointwise_regularizer": self._regularizer(context),
        }

    def weight_count(self, shape: Shape) -> int:
        channels = _image(shape)[2]
        kh, kw = self.kernel_size
        depthwise, pointwise = kh * kw * channels, channels * self.filters
        return depthwise + pointwise + (self.filters if self.use_bias else 0)


class SpatialDropout2D(LayerSpec):
    type: Literal["spatial_dropout2d"]
    rate: float = Field(..., ge=0.0, lt=1.0, description="fraction of feature maps zeroed")

    summary = "drops whole feature maps while training (dropout for conv layers)"
    example = {"type": "spatial_dropout2d", "rate": 0.2}
    example_input_shape = (8, 8, 3)

    keras_class = "SpatialDropout2D"


class ZeroPadding2D(LayerSpec):
    type: Literal["zero_padding2d"]
    padding: Pair = Field((1, 1), description="rows and columns of zeros added on each side")

    summary = "adds zeros around each image"
    example = {"type": "zero_padding2d", "padding": 2}
    example_input_shape = (8, 8, 1)

    keras_class = "ZeroPadding2D"

    def output_shape(self, shape: Shape) -> Shape:
        height, width, channels = _image(shape)
        rows, columns = self.padding
        return (height + 2 * rows, width + 2 * columns, channels)


# Augmentation: random changes to training images; inactive when evaluating and predicting.


class RandomFlip(LayerSpec):
    type: Literal["random_flip"]
    mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = "horizontal"

    summary = "augmentation: mirrors training images at random"
    example = {"type": "random_flip"}
    example_input_shape = (8, 8, 3)

    keras_class = "RandomFlip"
    augmentation = True


class RandomRotation(LayerSpec):
    type: Literal["random_rotation"]
    factor: float = Field(..., gt=0.0, le=1.0, description="fraction of a full turn, e.g. 0.05")
    fill_mode: Literal["constant", "reflect", "wrap", "nearest"] = "reflect"

    summary = "augmentation: rotates training images by up to factor * 360 degrees"
    example = {"type": "random_rotation", "factor": 0.05}
    example_input_shape = (8, 8, 1)

    keras_class = "RandomRotation"
    augmentation = True


class RandomZoom(LayerSpec):
    type: Literal["random_zoom"]
    height_factor: float = Field(..., gt=-1.0, lt=1.0, description="e.g. 0.1 = up to 10%")
    width_factor: float | None = Field(None, gt=-1.0, lt=1.0, description="default: as height")
    fill_mode: Literal["constant", "reflect", "wrap", "nearest"] = "reflect"

    summary = "augmentation: zooms training images in or out at random"
    example = {"type": "random_zoom", "height_factor": 0.1}
    example_input_shape = (8, 8, 1)

    keras_class = "RandomZoom"
    augmentation = True


class RandomTranslation(LayerSpec):
    type: Literal["random_translation"]
    height_factor: float = Field(..., ge=0.0, lt=1.0, description="fraction of the height")
    width_factor: float = Field(..., ge=0.0, lt=1.0, description="fraction of the width")
    fill_mode: Literal["constant", "reflect", "wrap", "nearest"] = "reflect"

    summary = "augmentation: shifts training images at random"
    example = {"type": "random_translation", "height_factor": 0.1, "width_factor": 0.1}
    example_input_shape = (8, 8, 1)

    keras_class = "RandomTranslation"
    augmentation = True


class RandomContrast(LayerSpec):
    type: Literal["random_contrast"]
    factor: float = Field(..., gt=0.0, le=1.0, description="contrast varies by up to this fraction")

    summary = "augmentation: changes the contrast of training images at random"
    example = {"type": "random_contrast", "factor": 0.2}
    example_input_shape = (8, 8, 3)

    keras_class = "RandomContrast"
    augmentation = True

    def arguments(self, context: BuildContext) -> dict[str, Any]:
        # value_range must match the pixels: dltool images arrive as 0..255.
        return {**super().arguments(context), "value_range": (0, 255)}


LAYERS: dict[str, type[LayerSpec]] = {
    "dense": Dense,
    "dropout": Dropout,
    "activation": ActivationLayer,
    "batch_normalization": BatchNormalization,
    "flatten": Flatten,
    "conv2d": Conv2D,
    "max_pooling2d": MaxPooling2D,
    "average_pooling2d": AveragePooling2D,
    "global_average_pooling2d": GlobalAveragePooling2D,
    "reshape": Reshape,
    "rescaling": Rescaling,
    "normalization": Normalization,
    "global_max_pooling2d": GlobalMaxPooling2D,
    "separable_conv2d": SeparableConv2D,
    "spatial_dropout2d": SpatialDropout2D,
    "zero_padding2d": ZeroPadding2D,
    "random_flip": RandomFlip,
    "random_rotation": RandomRotation,
    "random_zoom": RandomZoom,
    "random_translation": RandomTranslation,
    "random_contrast": RandomContrast,
}

# The Keras classes of the augmentation layers: they change images only while training, so an
# exported model leaves them out (dltool export).
AUGMENTATION_CLASSES = frozenset(spec.keras_class for spec in LAYERS.values() if spec.augmentation)

# The type of one entry of ``model.layers``: pydantic picks the spec by ``type``.
if TYPE_CHECKING:
    AnyLayer = LayerSpec
else:
    AnyLayer = Annotated[Union[tuple(LAYERS.values())], Field(discriminator="type")]  # noqa: UP007


def weight_counts(layers: Sequence[LayerSpec], input_shape: Sequence[int]) -> list[int] | None:
    """Each layer's weight count for examples of ``input_shape`` (what Keras' summary
    prints), worked out without Keras; ``None`` where a shape cannot be followed."""
    shape: Shape = tuple(input_shape)
    counts = []
    try:
        for layer in layers:
            counts.append(layer.weight_count(shape))
            shape = layer.output_shape(shape)
    except ShapeUnknown:
        return None
    return counts
