"""`dltool train` end to end, in-process: run folder contents, reproduction, refusals."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import dltool
from conftest import CONFIGS, tiny_config
from dltool.backend import import_keras
from dltool.config import load_config, validate_config
from dltool.rundir import RUN_FILES

keras = import_keras()

DLTOOL = Path(sys.executable).with_name("dltool")
PHASES = ("import", "data", "build", "fit", "evaluate", "save")  # profile.json's phases


def _train(run_cli: Callable[..., Any], config_path: Path, runs: Path, *extra: str) -> Path:
    result = run_cli("train", config_path, "--runs-dir", runs, *extra)
    assert result.exit_code == 0, result.stderr + result.stdout
    folders = sorted(runs.iterdir())
    return folders[-1]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_run_folder_is_complete(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        data={"validation_split": 0.25}, training={"epochs": 2, "metrics": ["accuracy", "auc"]}
    )
    run = _train(run_cli, write_config(config), tmp_path / "runs")

    assert run.name.startswith("tiny-")
    assert [name for name in RUN_FILES if not (run / name).is_file()] == []
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["seed"] == 3
    assert (
        info["params"] == 3 * 4 + 4 + 4 + 1 + 7
    )  # dense 16 + dense 5 + normalization mean/var/count 7
    assert info["epochs_completed"] == 2
    assert info["duration_s"] > 0
    assert {"dltool", "keras", "tensorflow", "numpy", "python"} <= set(info["versions"])
    assert info["started_at"] <= info["finished_at"]

    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics) == ["train", "validation", "test", "test_classes", "evaluated"]
    assert list(metrics["test"]) == ["loss", "accuracy", "auc"]
    evaluated = metrics["evaluated"]  # every row of each split: the training split is small
    assert evaluated["test"] == {"rows": 40, "of": 40}
    assert evaluated["train"]["rows"] == evaluated["train"]["of"] == info["examples"]["train"]
    classes = metrics["test_classes"]
    assert list(classes["per_class"]) == ["fail", "pass"]
    assert set(classes["per_class"]["pass"]) == {"precision", "recall", "f1-score", "support"}
    matrix = classes["confusion_matrix"]["rows_true_columns_predicted"]
    assert sum(map(sum, matrix)) == 40
    correct = matrix[0][0] + matrix[1][1]
    assert correct / 40 == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert (run / "plots" / "confusion_matrix.png").stat().st_size > 1000

    history = _rows(run / "history.csv")
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert list(history[0]) == [
        "epoch",
        "loss",
        "accuracy",
        "auc",
        "val_loss",
        "val_accuracy",
        "val_auc",
        "learning_rate",
        "duration_s",
    ]

    predictions = _rows(run / "predictions.csv")
    assert len(predictions) == 40
    assert list(predictions[0]) == [
        "index",
        "true",
        "predicted",
        "correct",
        "prob_fail",
        "prob_pass",
    ]
    assert {row["true"] for row in predictions} <= {"fail", "pass"}
    accuracy = np.mean([row["correct"] == "True" for row in predictions])
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["training"]["optimizer"]["name"] == "adam"
    assert (
        validate_config(resolved, "config.yaml").model_dump()
        == validate_config(config, "x").model_dump()
    )
    assert "Total params" in (run / "summary.txt").read_text()
    assert (run / "plots" / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.glob("**/*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_saved_model_takes_raw_inputs(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # labels: rule without a normalization layer in the config: dltool adds one (adapted on
    # the training rows), so the saved model is right on raw ages, hours and scores.
    layers = [
        {"type": "dense", "units": 8, "activation": "relu"},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ]
    config = tiny_config(
        data={"n_train": 400},
        model={"input_shape": [3], "layers": layers},
        training={"epochs": 8, "optimizer": {"name": "adam", "learning_rate": 0.03}},
    )
    run = _train(run_cli, write_config(config), tmp_path / "runs")
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert isinstance(model.layers[0], keras.layers.Normalization)
    from dltool.data import load_dataset

    resolved = load_config(run / "config.yaml")
    dataset = load_dataset(resolved.data, resolved.seed)
    assert dataset.x_test is not None
    assert dataset.x_test[:, 2].max() > 50  # raw previous scores, not normalized
    probabilities = model.predict(dataset.x_test, verbose=0)[:, 0]
    written = [float(row["prob_pass"]) for row in _rows(run / "predictions.csv")]
    np.testing.assert_allclose(probabilities, written, atol=1e-5)
    accuracy = float(np.mean((probabilities > 0.5) == dataset.y_test.reshape(-1)))
    assert accuracy >= 0.8, accuracy  # right on raw inputs, not only self-consistent


@pytest.mark.slow
def test_notebook_config_reproduced(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    config = yaml.safe_load((CONFIGS / "student_pass.yaml").read_text())
    config["training"]["epochs"] = 1
    path = tmp_path / "student_pass.yaml"
    path.write_text(yaml.safe_dump(config))
    run = _train(run_cli, path, tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["params"] == 49
    summary = (run / "summary.txt").read_text()
    assert "(None, 5)" in summary
    assert "(None, 4)" in summary
    assert "(None, 1)" in summary
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.35 < metrics["test"]["accuracy"] < 0.65  # random labels: nothing to learn
    assert len(_rows(run / "predictions.csv")) == 500


@pytest.mark.slow
def test_rule_labels_are_learnable(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        data={"n_train": 800, "n_test": 300},
        training={"epochs": 8, "optimizer": {"name": "adam", "learning_rate": 0.02}},
    )
    run = _train(run_cli, write_config(config), tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9, metrics


@pytest.mark.slow
def test_same_seed_same_numbers(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config(tiny_config(training={"epochs": 2}))
    first = _train(run_cli, path, tmp_path / "a")
    second = _train(run_cli, path, tmp_path / "b")
    assert (first / "metrics.json").read_text() == (second / "metrics.json").read_text()
    assert (first / "predictions.csv").read_text() == (second / "predictions.csv").read_text()


@pytest.mark.slow
def test_missing_seed_is_drawn_and_recorded(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config()
    del config["seed"]
    run = _train(run_cli, write_config(config), tmp_path / "runs")
    seed = json.loads((run / "run.json").read_text())["seed"]
    assert isinstance(seed, int)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == seed


@pytest.mark.slow
def test_runs_never_overwrite(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config(tiny_config())
    runs = tmp_path / "runs"
    for _ in range(2):
        _train(run_cli, path, runs)
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 2
    assert all(name.startswith("tiny-") for name in folders)


@pytest.mark.slow
def test_name_option(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    run = _train(run_cli, write_config(tiny_config()), tmp_path / "runs", "--name", "renamed")
    assert run.name.startswith("renamed-")
    result = run_cli(
        "train", write_config(tiny_config()), "--runs-dir", tmp_path / "other", "--name", "../up"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --name: name: not allowed (received '../up'")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"training": {"epochz": 1}},
            r"training\.epochz: unknown key, did you mean 'epochs'\?",
            id="config",
        ),
        pytest.param(
            {
                "model": {
                    "input_shape": [3],
                    "layers": [
                        {"type": "conv2d", "filters": 2, "kernel_size": 3},
                        {"type": "dense", "units": 1},
                    ],
                },
                "training": {"loss": "mean_squared_error", "metrics": []},
            },
            r"model\.layers\[0\]: a conv2d layer cannot take the output of the layer before it \(received shape \(None, 3\); expected what Keras accepts: ",
            id="layer-shape",
        ),
        pytest.param(
            {"model": {"input_shape": [4]}},
            r"exp\.yaml: model\.input_shape: does not match the data \(received \[4\]; expected \[3\] for data\.source 'student'\)",
            id="input-shape",
        ),
    ],
)
def test_refused_before_any_run_folder(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    change: dict[str, Any],
    message: str,
) -> None:
    config = tiny_config()
    for key, value in change.items():
        config[key] = {**config[key], **value}
    runs = tmp_path / "runs"
    result = run_cli("train", write_config(config), "--runs-dir", runs)
    assert result.exit_code == 2, result.stdout
    assert len(result.stderr.splitlines()) == 1
    assert pytest.importorskip("re").search(message, result.stderr), result.stderr
    assert not runs.exists()


def _only_run(runs: Path) -> Path:
    (folder,) = runs.iterdir()
    return folder


@pytest.mark.slow
def test_several_configs_go_on_after_a_failure(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    good = write_config(tiny_config(name="first"), "first.yaml")
    bad = write_config(tiny_config(training={"epochs": 0}), "bad.yaml")
    other = write_config(tiny_config(name="second"), "second.yaml")
    result = run_cli("train", good, bad, other, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "training.epochs: out of range" in result.stderr
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "runs").iterdir()) == [
        "first",
        "second",
    ]
    assert "failed (exit 2)" in result.stdout
    assert result.stdout.count("\tok\t") == 2


def _seconds(run: Path) -> dict[str, Any]:
    seconds: dict[str, Any] = json.loads((run / "profile.json").read_text())["seconds"]
    return seconds


@pytest.mark.slow
def test_profile_flag_writes_every_phase(write_config: Callable[..., Path], tmp_path: Path) -> None:
    # A real process: the import phase is TensorFlow's first import, which only a fresh
    # process has (in-process, another test may have imported it already).
    runs = tmp_path / "runs"
    done = subprocess.run(
        [str(DLTOOL), "train", str(write_config(tiny_config())), "--runs-dir", str(runs), "--profile"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = _only_run(runs)
    seconds = _seconds(run)
    assert set(PHASES) <= set(seconds)
    assert all(isinstance(seconds[k], float) and seconds[k] >= 0 for k in PHASES), seconds
    assert seconds["import"] > 0
    assert "profile (seconds): import" in done.stdout
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["training"]["profile"] is True
    info = json.loads((run / "run.json").read_text())
    assert info["timings"] == seconds  # run.json keeps the same figures


@pytest.mark.slow
def test_training_profile_key_and_auto_steps(tmp_path: Path) -> None:
    # 256 rows in batches of 1: 256 batches an epoch, so auto (0) resolves to 32 steps per call.
    config = tiny_config(
        data={"n_train": 256},
        training={"batch_size": 1, "profile": True},
    )
    result = dltool.train(config, runs_dir=tmp_path / "runs", quiet=True)

    profile = json.loads((result.path / "profile.json").read_text())
    assert profile["steps_per_execution"] == 32
    assert profile["epochs"] == 1
    seconds = profile["seconds"]
    assert set(PHASES) - {"import"} <= set(seconds)  # import: only when this process imported TF
    assert all(value >= 0 for value in seconds.values()), seconds


@pytest.mark.slow
def test_no_profile_json_by_default(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    result = run_cli("train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = _only_run(tmp_path / "runs")
    assert not (run / "profile.json").exists()
    assert {"data", "build", "fit", "evaluate", "save"} <= set(
        json.loads((run / "run.json").read_text())["timings"]
    )


@pytest.mark.slow
def test_jit_compile_and_steps_per_execution_train_and_are_recorded(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        training={"jit_compile": True, "steps_per_execution": 4, "profile": True, "epochs": 2}
    )
    result = run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs")

    assert result.exit_code == 0, result.output
    run = _only_run(tmp_path / "runs")
    training = yaml.safe_load((run / "config.yaml").read_text())["training"]
    assert training["jit_compile"] is True
    assert training["steps_per_execution"] == 4
    assert json.loads((run / "profile.json").read_text())["steps_per_execution"] == 4
    assert json.loads((run / "run.json").read_text())["epochs_completed"] == 2


@pytest.mark.slow
def test_speed_option_defaults_are_recorded(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    result = run_cli("train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    training = yaml.safe_load((_only_run(tmp_path / "runs") / "config.yaml").read_text())[
        "training"
    ]
    assert training["steps_per_execution"] == 0  # auto
    assert training["jit_compile"] is False
    assert training["backend"] == "tensorflow"
    assert training["profile"] is False


@pytest.mark.slow
def test_non_finite_loss_fails_the_run(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        model={
            "input_shape": [3],
            "layers": [{"type": "dense", "units": 8}, {"type": "dense", "units": 1}],
        },
        training={
            "loss": "mean_squared_error",
            "metrics": [],
            "epochs": 3,
            "optimizer": {"name": "sgd", "learning_rate": 10.0},
        },
    )
    runs = tmp_path / "runs"
    result = run_cli("train", write_config(config), "--runs-dir", runs)
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "error: training: the loss became" in result.stderr
    assert "try a lower learning rate" in result.stderr
    (run,) = runs.iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed"
    assert info["error"].startswith("training: the loss became")
    assert not (run / "model.keras").exists()


@pytest.mark.slow
def test_early_stopping_and_best_checkpoint(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        data={"validation_split": 0.3},
        training={
            "epochs": 40,
            "optimizer": {"name": "adam", "learning_rate": 0.05},
            "early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 0.05},
            "save_best": {"monitor": "val_accuracy"},
        },
    )
    result = run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["stopped_early"] is True
    assert info["epochs_completed"] < 40
    assert "early stopping: no improvement in val_loss for 1 epochs" in result.stdout
    best = keras.saving.load_model(run / "best.keras", safe_mode=True)
    assert best.count_params() == info["params"]


@pytest.mark.parametrize(
    ("schedule", "decreasing"),
    [
        pytest.param(
            {"type": "exponential_decay", "decay_steps": 2, "decay_rate": 0.5},
            True,
            id="exponential",
        ),
        pytest.param({"type": "cosine_decay"}, True, id="cosine"),
        pytest.param({"type": "cosine_decay", "warmup_steps": 20}, False, id="cosine-warmup"),
        pytest.param(
            {"type": "reduce_on_plateau", "monitor": "loss", "patience": 0, "min_delta": 10.0},
            True,
            id="plateau",
        ),
    ],
)
@pytest.mark.slow
def test_learning_rate_schedules(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    schedule: dict[str, Any],
    decreasing: bool,
) -> None:
    config = tiny_config(training={"epochs": 3, "learning_rate_schedule": schedule})
    run = _train(run_cli, write_config(config), tmp_path / "runs")
    rates = [float(row["learning_rate"]) for row in _rows(run / "history.csv")]
    assert (rates[-1] < rates[0]) is decreasing, rates


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.slow
def test_every_optimizer_trains(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path, optimizer: str
) -> None:
    run = _train(
        run_cli, write_config(tiny_config(training={"optimizer": optimizer})), tmp_path / "runs"
    )
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_batch_larger_than_data(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(data={"n_train": 50}, training={"batch_size": 500})
    result = run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    assert (
        "note: training.batch_size 500 is larger than the 50 training rows; using 50"
        in result.stdout
    )


def test_labels_checked_against_outputs() -> None:
    from dltool.data import Dataset
    from dltool.errors import DataError
    from dltool.prepare import check_labels

    config = validate_config(
        tiny_config(
            model={
                "input_shape": [3],
                "layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
            },
            training={"loss": "sparse_categorical_crossentropy"},
        ),
        "x",
    )
    labels = np.array([0, 1, 7, 2, 9, -1])
    dataset = Dataset(x_train=np.zeros((6, 3)), y_train=labels)
    with pytest.raises(
        DataError,
        match=r"^data: train labels \[-1, 7, 9\] are out of range for 3 output units \(expected integers 0..2\)$",
    ):
        check_labels(dataset, config, outputs=3)
    binary = validate_config(tiny_config(), "x")
    with pytest.raises(DataError, match=r"data: train labels \[2\] are not 0 or 1"):
        check_labels(Dataset(x_train=np.zeros((2, 3)), y_train=np.array([0, 2])), binary, outputs=1)

    one_class = Dataset(x_train=np.zeros((3, 3)), y_train=np.array([1, 1, 1]), class_names=["fail", "pass"])  # fmt: skip
    with pytest.raises(DataError) as caught:
        check_labels(one_class, binary, outputs=1)
    assert caught.value.lines == [
        "data: the training labels have 1 class (pass); binary_crossentropy needs at least 2 "
        "(every training label is the same)"
    ]


def test_a_single_class_npz_is_refused_like_a_csv(run_cli: Callable[..., Any], tmp_path: Path) -> None:  # fmt: skip
    np.savez(tmp_path / "one.npz", x_train=np.random.default_rng(0).random((20, 3)), y_train=np.zeros(20, dtype=int))  # fmt: skip
    config = tiny_config(training={"epochs": 1})
    config["data"] = {"source": "numpy", "path": str(tmp_path / "one.npz")}
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("train", tmp_path / "one.yaml", "--runs-dir", tmp_path / "runs")
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {tmp_path / 'one.yaml'}: data: the training labels have 1 class (0); "
        "binary_crossentropy needs at least 2 (every training label is the same)\n",
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_categorical_crossentropy_and_top_k(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    config = yaml.safe_load((CONFIGS / "digits_cnn.yaml").read_text())
    config["training"].update(
        {"loss": "categorical_crossentropy", "metrics": ["accuracy", "top_3_accuracy"], "epochs": 1}
    )
    config["training"].pop("early_stopping")
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(config))
    run = _train(run_cli, path, tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["top_3_accuracy"] >= metrics["test"]["accuracy"]
    header = _rows(run / "predictions.csv")[0]
    assert list(header)[4:] == [f"prob_{d}" for d in range(10)]
    assert len(metrics["test_classes"]["per_class"]) == 10


@pytest.mark.slow
@pytest.mark.parametrize("epochs", [3, 30], ids=["3-epochs", "30-epochs"])
def test_every_epoch_sees_every_row_when_calls_do_not_divide_it(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path, epochs: int
) -> None:
    """50 batches an epoch, 32 per call: each epoch trains 50 and no input runs out.

    Before: 64 per epoch (14 of the next epoch's), "Your input ran out of data" in the
    last one (warnings are errors in the tests), and past epoch 25 the data restarted.
    """
    config = tiny_config(
        data={"n_train": 200}, training={"epochs": epochs, "batch_size": 4, "steps_per_execution": 32}
    )  # fmt: skip
    run = _train(run_cli, write_config(config), tmp_path / "runs")
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert int(model.optimizer.iterations) == epochs * 50
    assert len(_rows(run / "history.csv")) == epochs
