"""The layer registry: every entry builds, arguments reach Keras, regularizers apply."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter

from conftest import tiny_config
from dltool.backend import import_keras
from dltool.config import validate_config
from dltool.errors import ConfigError
from dltool.layers import LAYERS, AnyLayer, BuildContext, RegularizerSpec, weight_counts

keras = import_keras()
ADAPTER: TypeAdapter = TypeAdapter(AnyLayer)

REQUIRED = {
    "dense", "dropout", "activation", "batch_normalization", "flatten", "conv2d", "max_pooling2d",
    "average_pooling2d", "global_average_pooling2d", "reshape", "rescaling", "normalization",
}  # fmt: skip


def test_registry_has_the_required_layers() -> None:
    assert set(LAYERS) >= REQUIRED


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_entry_builds_from_its_example(name: str) -> None:
    spec_class = LAYERS[name]
    spec = ADAPTER.validate_python(spec_class.example)
    assert type(spec) is spec_class
    layer = spec.build(BuildContext())
    model = keras.Sequential([keras.Input(shape=spec_class.example_input_shape), layer])
    if name == "normalization":
        layer.adapt(np.random.default_rng(0).normal(size=(16, *spec_class.example_input_shape)))
    output = model.predict(
        np.ones((2, *spec_class.example_input_shape), dtype="float32"), verbose=0
    )
    assert output.shape[0] == 2
    assert np.isfinite(output).all()
    assert spec_class.summary, f"{name} needs a summary for `dltool layers`"


VARIANTS = [  # layers whose shape or weight count depends on their arguments
    ({"type": "dense", "units": 7, "use_bias": False}, (4, 5)),
    (
        {"type": "conv2d", "filters": 3, "kernel_size": [3, 2], "strides": 2, "padding": "same"},
        (9, 7, 2),
    ),
    ({"type": "conv2d", "filters": 3, "kernel_size": 3, "strides": [2, 1]}, (9, 7, 2)),
    ({"type": "separable_conv2d", "filters": 5, "kernel_size": 3, "use_bias": False}, (8, 8, 3)),
    ({"type": "max_pooling2d", "pool_size": 3, "strides": 2, "padding": "same"}, (9, 8, 2)),
    ({"type": "average_pooling2d", "pool_size": [2, 3]}, (9, 8, 2)),
    ({"type": "batch_normalization", "axis": 1}, (4, 6)),
    ({"type": "normalization", "axis": None}, (4, 3)),
    ({"type": "normalization", "axis": 1}, (4, 3)),
    ({"type": "normalization", "mean": [0, 1, 2], "variance": [1, 1, 1]}, (3,)),
    ({"type": "reshape", "target_shape": [-1, 2]}, (4, 3)),
    ({"type": "zero_padding2d", "padding": [1, 3]}, (4, 5, 2)),
]


@pytest.mark.parametrize(
    ("example", "input_shape"),
    [(LAYERS[name].example, LAYERS[name].example_input_shape) for name in LAYERS] + VARIANTS,
    ids=[*LAYERS, *(f"{v[0]['type']}-{i}" for i, v in enumerate(VARIANTS))],
)
def test_weight_counts_and_shapes_match_keras(example: dict[str, object], input_shape: tuple[int, ...]) -> None:  # fmt: skip
    spec = ADAPTER.validate_python(example)
    model = keras.Sequential([keras.Input(shape=input_shape), spec.build(BuildContext())])
    assert weight_counts([spec], input_shape) == [model.count_params()]
    assert spec.output_shape(input_shape) == model.output_shape[1:]


@pytest.mark.parametrize(
    ("example", "input_shape"),
    [
        ({"type": "conv2d", "filters": 2, "kernel_size": 5}, (4, 4, 1)),  # larger than the image
        ({"type": "global_max_pooling2d"}, (8,)),  # needs an image
        ({"type": "reshape", "target_shape": [5]}, (4,)),  # 4 values cannot make 5
        ({"type": "reshape", "target_shape": [-1, 3]}, (4,)),
        ({"type": "batch_normalization", "axis": 3}, (4, 2)),
    ],
)
def test_weight_counts_leave_impossible_shapes_to_keras(example: dict[str, object], input_shape: tuple[int, ...]) -> None:  # fmt: skip
    assert weight_counts([ADAPTER.validate_python(example)], input_shape) is None


def test_arguments_reach_keras() -> None:
    spec = ADAPTER.validate_python(
        {
            "type": "conv2d",
            "filters": 6,
            "kernel_size": 5,
            "strides": [2, 1],
            "padding": "same",
            "activation": "relu",
        }
    )
    layer = spec.build(BuildContext())
    config = layer.get_config()
    assert (config["filters"], config["kernel_size"], config["strides"], config["padding"]) == (
        6,
        (5, 5),
        (2, 1),
        "same",
    )
    assert config["activation"] == "relu"


def test_default_regularizer_and_per_layer_override() -> None:
    default = RegularizerSpec(l2=0.01)
    plain = ADAPTER.validate_python({"type": "dense", "units": 2}).build(BuildContext(default))
    assert plain.kernel_regularizer.get_config() == {"l1": 0.0, "l2": 0.01}
    own = ADAPTER.validate_python({"type": "dense", "units": 2, "kernel_regularizer": {"l1": 0.5}})
    assert own.build(BuildContext(default)).kernel_regularizer.get_config() == {
        "l1": 0.5,
        "l2": 0.0,
    }
    assert (
        ADAPTER.validate_python({"type": "dense", "units": 2})
        .build(BuildContext())
        .kernel_regularizer
        is None
    )


def test_regularization_adds_to_the_loss() -> None:
    from dltool.model import build_model

    config = validate_config(tiny_config(training={"regularization": {"l2": 0.1}}), "x")
    model = build_model(config, np.ones((8, 3)), "x")
    assert len(model.losses) == 2  # one penalty per dense layer


def test_fixed_normalization_statistics() -> None:
    spec = ADAPTER.validate_python(
        {"type": "normalization", "mean": [1.0, 2.0], "variance": [4.0, 1.0]}
    )
    model = keras.Sequential([keras.Input(shape=(2,)), spec.build(BuildContext())])
    np.testing.assert_allclose(
        model.predict(np.array([[3.0, 2.0]]), verbose=0), [[1.0, 0.0]], atol=1e-3
    )


def test_shape_mismatch_is_a_config_error() -> None:
    from dltool.model import build_model

    config = validate_config(
        tiny_config(
            model={
                "input_shape": [3],
                "layers": [
                    {"type": "conv2d", "filters": 2, "kernel_size": 3},
                    {"type": "flatten"},
                    {"type": "dense", "units": 1, "activation": "sigmoid"},
                ],
            }
        ),
        "exp.yaml",
    )
    with pytest.raises(
        ConfigError,
        match=r"exp.yaml: model.layers\[0\]: a conv2d layer cannot take the output of the layer before it \(received shape \(None, 3\); expected what Keras accepts: ",
    ):
        build_model(config, np.ones((4, 3)), "exp.yaml")


@pytest.mark.parametrize("name", [n for n in LAYERS if n.startswith("random_")])
def test_augmentation_only_while_training(name: str) -> None:
    spec = ADAPTER.validate_python(LAYERS[name].example)
    layer = spec.build(BuildContext())
    shape = LAYERS[name].example_input_shape
    images = np.random.default_rng(0).uniform(0, 255, size=(4, *shape)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    changed = [
        not np.allclose(keras.ops.convert_to_numpy(layer(images, training=True)), images)
        for _ in range(5)
    ]
    assert any(changed), f"{name} never changed a training batch"
