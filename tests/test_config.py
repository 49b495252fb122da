"""Experiment files: every shipped config validates; every mistake gets one precise line."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CONFIGS, SHIPPED_CONFIGS, tiny_config
from dltool.config import ExperimentConfig, load_config, resolved_dict, validate_config
from dltool.errors import ConfigError

SHIPPED = SHIPPED_CONFIGS


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    # The resolved config is itself a valid config that resolves to the same thing.
    again = validate_config(resolved_dict(config), source="resolved")
    assert resolved_dict(again) == resolved_dict(config)


def test_notebook_config_is_the_notebook() -> None:
    config = load_config(CONFIGS / "student_pass.yaml")
    assert config.seed == 200
    assert (config.data.n_train, config.data.n_test, config.data.labels) == (1000, 500, "random")
    assert [(layer.units, layer.activation) for layer in config.model.layers] == [
        (5, "relu"),
        (4, "relu"),
        (1, "sigmoid"),
    ]
    training = config.training
    assert (training.optimizer.name, training.loss, training.metrics) == (
        "adam",
        "binary_crossentropy",
        ["accuracy"],
    )
    assert (training.epochs, training.batch_size) == (10, 32)


def _with(path: str, value: Any) -> dict[str, Any]:
    """tiny_config() with one dotted key set (``model.layers[1].units``)."""
    config = tiny_config()
    parts = re.findall(r"[^.\[\]]+", path)
    target: Any = config
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    last = parts[-1]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return config


BAD = [
    (
        "data.n_trian",
        100,
        r"data\.n_trian: unknown key, did you mean 'n_train'\? \(received 'n_trian'; expected one of source, validation_split, n_train, n_test, labels, normalize\)",
    ),
    (
        "data.labels",
        "randm",
        r"data\.labels: unknown value, did you mean 'random'\? \(received 'randm'; expected one of random, rule\)",
    ),
    (
        "data.source",
        "studnet",
        r"data\.source: unknown source, did you mean 'student'\? \(received 'studnet'; expected one of student, csv, numpy, image_folder, builtin, shapes\)",
    ),
    (
        "data.validation_split",
        1.5,
        r"data\.validation_split: out of range \(received 1\.5; expected a number < 1\.0\)",
    ),
    ("data.n_train", "many", r"data\.n_train: wrong type \(received 'many'; expected an integer\)"),
    (
        "model.input_shape",
        [],
        r"model\.input_shape: wrong number of items \(received 0; expected at least 1\)",
    ),
    (
        "model.layers[1].type",
        "dens",
        r"model\.layers\[1\]\.type: unknown type, did you mean 'dense'\? \(received 'dens'; expected one of dense, dropout, ",
    ),
    (
        "model.layers[1].activation",
        "relux",
        r"model\.layers\[1\]\.activation: unknown value, did you mean 'relu'\? \(received 'relux'",
    ),
    (
        "model.layers[1].units",
        0,
        r"model\.layers\[1\]\.units: out of range \(received 0; expected a number >= 1\)",
    ),
    ("model.layers[1].unit", 4, r"model\.layers\[1\]\.unit: unknown key, did you mean 'units'\?"),
    (
        "model.layers[1]",
        {"units": 4},
        r"model\.layers\[1\]\.type: missing required key \(expected one of dense, dropout",
    ),
    (
        "model.layers[1]",
        {"type": "dropout", "rate": 1.5},
        r"model\.layers\[1\]\.rate: out of range \(received 1\.5; expected a number < 1\.0\)",
    ),
    (
        "model.layers[1]",
        {"type": "dropout"},
        r"model\.layers\[1\]\.rate: missing required key \(expected a number: fraction of inputs zeroed",
    ),
    (
        "model.layers[1]",
        {"type": "conv2d", "filters": 2, "kernel_size": [3, 0]},
        r"model\.layers\[1\]\.kernel_size\[1\]: out of range \(received 0; expected a number >= 1\)",
    ),
    (
        "model.layers[1]",
        {"type": "normalization", "mean": [1.0]},
        r"model\.layers\[1\]: give both mean and variance, or neither",
    ),
    (
        "model.layers[1].kernel_regularizer",
        {"l3": 0.1},
        r"model\.layers\[1\]\.kernel_regularizer\.l3: unknown key \(received 'l3'; expected one of l1, l2\)",
    ),
    (
        "training.epoch",
        3,
        r"training\.epoch: unknown key, did you mean 'epochs'\? \(received 'epoch'; expected one of optimizer, loss, metrics, epochs, batch_size",
    ),
    (
        "training.epochs",
        0,
        r"training\.epochs: out of range \(received 0; expected a number >= 1\)",
    ),
    (
        "training.batch_size",
        2.5,
        r"training\.batch_size: wrong type \(received 2\.5; expected an integer\)",
    ),
    (
        "training.loss",
        "binary_cross_entropy",
        r"training\.loss: unknown value, did you mean 'binary_crossentropy'\?",
    ),
    (
        "training.metrics",
        ["accuracy", "acuracy"],
        r"training\.metrics\[1\]: unknown value, did you mean 'accuracy'\?",
    ),
    (
        "training.metrics",
        ["accuracy", "accuracy"],
        r"training\.metrics: each metric once \(received accuracy twice\)",
    ),
    (
        "training.optimizer",
        "adamm",
        r"training\.optimizer\.name: unknown name, did you mean 'adam'\? \(received 'adamm'; expected one of sgd, adam, adamw, rmsprop\)",
    ),
    (
        "training.optimizer",
        {"name": "sgd", "beta_1": 0.9},
        r"training\.optimizer\.beta_1: unknown key \(received 'beta_1'; expected one of name, learning_rate, clipnorm, momentum, nesterov\)",
    ),
    (
        "training.optimizer",
        {"name": "adam", "learning_rate": -1},
        r"training\.optimizer\.learning_rate: out of range \(received -1; expected a number > 0\.0\)",
    ),
    (
        "training.optimizer",
        {"learning_rate": 0.1},
        r"training\.optimizer\.name: missing required key \(expected one of sgd, adam, adamw, rmsprop\)",
    ),
    (
        "training.learning_rate_schedule",
        {"type": "step"},
        r"training\.learning_rate_schedule\.type: unknown type \(received 'step'; expected one of exponential_decay, cosine_decay, reduce_on_plateau\)",
    ),
    (
        "training.early_stopping",
        {"patience": -1},
        r"training\.early_stopping\.patience: out of range \(received -1; expected a number >= 0\)",
    ),
    (
        "training.early_stopping",
        {"monitor": "val_loss"},
        r"training\.early_stopping\.monitor: needs validation data \(received 'val_loss' with data\.validation_split=0; expected data\.validation_split > 0, or monitor: 'loss'\)",
    ),
    (
        "training.save_best",
        {"monitor": "acuracy"},
        r"training\.save_best\.monitor: unknown quantity, did you mean 'accuracy'\? \(received 'acuracy'; expected one of loss, accuracy\)",
    ),
    (
        "training.loss",
        "sparse_categorical_crossentropy",
        r"model\.layers\[2\]\.units: sparse_categorical_crossentropy needs one output unit per class \(received 1; expected >= 2",
    ),
    ("training.metrics", ["auc"], None),  # valid: auc with binary_crossentropy
    ("name", "../escape", r"name: not allowed \(received '\.\./escape'; expected letters, digits"),
    ("name", ".hidden", r"name: not allowed"),
    ("seed", -1, r"seed: out of range \(received -1; expected a number >= 0\)"),
    (
        "extra",
        1,
        r"extra: unknown key \(received 'extra'; expected one of name, seed, data, model, training\)",
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "message"), BAD, ids=[f"{key}={value!r}"[:60] for key, value, _ in BAD]
)
def test_validate_reports_mistake(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    key: str,
    value: Any,
    message: str | None,
) -> None:
    path = write_config(_with(key, value))
    result = run_cli("validate", path)
    if message is None:
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(rf"error: {re.escape(str(path))}: {message}", lines[0]), lines[0]
    assert "Traceback" not in result.stderr


def test_every_mistake_reported_at_once(
    run_cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    config = tiny_config()
    config["data"]["n_trian"] = 5
    config["model"]["layers"][1]["units"] = -1
    config["model"]["layers"].append({"type": "dropuot", "rate": 0.5})
    config["training"]["epochz"] = 2
    path = write_config(config)
    result = run_cli("validate", path)
    assert result.exit_code == 2
    keys = [line.split(": ")[2] for line in result.stderr.splitlines()]
    assert keys == [
        "data.n_trian",
        "model.layers[1].units",
        "model.layers[3].type",
        "training.epochz",
    ]


def test_rules_between_sections_reported_with_key_mistakes(
    run_cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    # Misspelled keys do not hide the problems between sections: one report has them all.
    config = tiny_config(training={"early_stopping": {"monitor": "val_loss"}, "epochz": 2})
    config["data"]["n_trian"] = 5
    config["model"]["input_shape"] = [4]
    config["model"]["layers"][1]["unitz"] = 3
    result = run_cli("validate", write_config(config))
    assert result.exit_code == 2
    keys = [line.split(": ")[2] for line in result.stderr.splitlines()]
    assert keys == [
        "data.n_trian",
        "model.layers[1].unitz",
        "training.epochz",
        "training.early_stopping.monitor",
        "model.input_shape",
    ]
    assert (
        "needs validation data (received 'val_loss' with data.validation_split=0;" in result.stderr
    )


def test_yaml_problem_names_file(
    run_cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    path = write_config("name: a\nname: b\n")
    result = run_cli("validate", path)
    assert result.exit_code == 2
    assert (
        result.stderr == f"error: {path}: line 2: duplicate key 'name' (first defined on line 1)\n"
    )


def test_missing_file(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    result = run_cli("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nope.yaml'}: file not found\n"


def test_validate_prints_resolved_config(run_cli: Callable[..., Any]) -> None:
    result = run_cli("validate", CONFIGS / "student_pass.yaml")
    assert result.exit_code == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["training"]["optimizer"] == {
        "learning_rate": 0.001,
        "clipnorm": None,
        "name": "adam",
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-07,
        "amsgrad": False,
    }
    assert resolved["model"]["layers"][0]["kernel_initializer"] == "glorot_uniform"


def test_validate_several_files_reports_all(
    run_cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    good = write_config(tiny_config(), "good.yaml")
    bad1 = write_config(_with("training.epochs", 0), "bad1.yaml")
    bad2 = write_config(_with("data.labels", "x"), "bad2.yaml")
    result = run_cli("validate", "--quiet", good, bad1, bad2)
    assert result.exit_code == 2
    assert [line.split(": ")[1] for line in result.stderr.splitlines()] == [str(bad1), str(bad2)]
    assert result.stdout == ""


def test_name_defaults_to_file_stem(write_config: Callable[..., Path]) -> None:
    config = tiny_config()
    del config["name"]
    path = write_config(config, "my experiment (v2).yaml")
    assert load_config(path).name == "my-experiment-v2"


def test_fractions_and_yaml_exponents(write_config: Callable[..., Path]) -> None:
    config = _with("model.layers[0]", {"type": "rescaling", "scale": "1/255"})
    config["training"]["optimizer"] = {
        "name": "adam",
        "learning_rate": "1e-3",
    }  # YAML 1.1 reads 1e-3 as text
    loaded = load_config(write_config(config))
    assert loaded.model.layers[0].scale == pytest.approx(1 / 255)
    assert loaded.training.optimizer.learning_rate == pytest.approx(0.001)


def test_adapted_normalization_must_precede_weights() -> None:
    config = tiny_config()
    config["model"]["layers"].insert(2, {"type": "normalization"})
    with pytest.raises(
        ConfigError,
        match=r"x: model: layers\[2\] \(normalization without mean/variance\) is adapted on the training data, so it must come before layers with weights \(received it after layers\[1\]",
    ):
        validate_config(config, source="x")


def test_schema_is_json_schema() -> None:
    schema = ExperimentConfig.model_json_schema()
    assert set(schema["properties"]) == {"name", "seed", "data", "model", "training"}


def _refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (line,) = caught.value.lines
    return line


def test_extends_a_symlink_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "loop1.yaml").symlink_to(tmp_path / "loop2.yaml")
    (tmp_path / "loop2.yaml").symlink_to(tmp_path / "loop1.yaml")
    (tmp_path / "a.yaml").write_text("extends: loop1.yaml\n")
    assert _refusal(tmp_path / "a.yaml").endswith("a.yaml: extends: loop1.yaml is a symlink loop")


def test_extends_a_folder_says_folder(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path}\n")
    assert _refusal(tmp_path / "a.yaml").endswith(
        f"a.yaml: extends: {tmp_path} is a folder (expected the path of another experiment file)"
    )


def test_experiment_with_merge_keys_validates(tmp_path: Path) -> None:
    text = (CONFIGS / "student_pass.yaml").read_text()
    old = "    - {type: dense, units: 5, activation: relu}\n    - {type: dense, units: 4, activation: relu}\n"
    assert old in text
    merged = (
        "    - &hidden {type: dense, units: 5, activation: relu}\n    - {<<: *hidden, units: 4}\n"
    )
    (tmp_path / "a.yaml").write_text(text.replace(old, merged))
    assert resolved_dict(load_config(tmp_path / "a.yaml")) == resolved_dict(
        load_config(CONFIGS / "student_pass.yaml")
    )


@pytest.mark.parametrize("value", ["training.epochs=1\n2", "name=a\rb", "name=\x1b[31mred"])
def test_set_with_a_control_character_is_one_line(run_cli: Callable[..., Any], value: str) -> None:
    result = run_cli("validate", CONFIGS / "student_pass.yaml", "--set", value)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert (
        line
        == f"error: --set {value!r}: expected KEY=VALUE on one line, without control characters"
    )


def test_a_model_too_large_to_train_is_refused_with_its_size(run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "validate", CONFIGS / "student_pass.yaml", "--set", "model.layers[1].units=100000000000000"
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --set model.layers[1].units=100000000000000: model.layers[1]: the model would have "
        "700,000,000,000,021 weights (600,000,000,000,000 in this layer), about 11,200.0 TB to "
        "train (expected at most 100,000,000 weights)\n"
    )
    at_limit = run_cli(  # 3*5+5 + 5*u+u + u+1 weights: u = 14,285,710 is just under the limit
        "validate", CONFIGS / "student_pass.yaml", "--set", "model.layers[1].units=14285710"
    )
    assert at_limit.exit_code == 0, at_limit.stderr


@pytest.mark.parametrize(
    ("assignment", "received"),
    [
        ("training.batch_size=true", "true"),
        ("training.epochs=2.0", "2.0"),
        ("training.epochs='3'", "'3'"),
        ("model.layers[0].units=5.5", "5.5"),
        ("seed=1.0", "1.0"),
    ],
)
def test_integers_are_strict(run_cli: Callable[..., Any], assignment: str, received: str) -> None:
    result = run_cli("validate", CONFIGS / "student_pass.yaml", "--set", assignment)
    key = assignment.split("=")[0]
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: --set {assignment}: {key}: wrong type (received {received}; expected an integer)\n",
    )


def test_integer_lists_are_strict(tmp_path: Path) -> None:
    config = tiny_config()
    config["model"]["input_shape"] = [3.0]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config))
    assert _refusal(tmp_path / "a.yaml").endswith(
        "model.input_shape[0]: wrong type (received 3.0; expected an integer)"
    )


def test_a_missing_key_does_not_hide_rules_between_sections(tmp_path: Path) -> None:
    config = tiny_config(training={"early_stopping": {"monitor": "val_loss"}})
    config["data"]["validation_split"] = 0.0
    del config["training"]["loss"]  # the stand-ins for loss must not add problems of their own
    config["training"]["metrics"] = ["accuracy", "mean_absolute_error"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "a.yaml")
    assert [line.split(": ", 2)[1] for line in caught.value.lines] == [
        "training.loss",
        "training.early_stopping.monitor",
    ]
    assert "needs validation data (received 'val_loss'" in caught.value.lines[1]


def test_extends_a_fifo_says_so(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "a.yaml").write_text("extends: pipe.yaml\n")
    assert _refusal(tmp_path / "a.yaml").endswith(
        "a.yaml: extends: pipe.yaml is not a regular file"
    )
