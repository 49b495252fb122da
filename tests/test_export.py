"""`dltool export` (checked exports), predict and evaluate with an export, and model_sha256."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SHIPPED_CONFIGS, ShippedSmoke, tiny_config
from dltool.cli import app

Cli = Callable[..., Any]
EXAMPLES = SHIPPED_CONFIGS
FORMATS = ("saved_model", "tflite", "onnx")
MODEL_FILES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _leftovers(folder: Path) -> list[str]:
    """Hidden scratch folders an export may have left beside its target."""
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")))


@pytest.fixture(scope="module")
def shipped_runs(shipped_smoke: ShippedSmoke) -> Iterator[dict[str, Path]]:
    """Every shipped config's smoke run (conftest's shipped_smoke, trained once per worker).

    KERAS_HOME stays set while the module's tests run: mnist_cnn's export reads its test
    split from the same fake cache.
    """
    assert shipped_smoke.result.exit_code == 0, shipped_smoke.result.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(shipped_smoke.keras_home))
        yield shipped_smoke.runs


@pytest.mark.slow
@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("config", [p.stem for p in EXAMPLES])
def test_every_shipped_config_exports_and_passes_the_check(
    run_cli: Cli, shipped_runs: dict[str, Path], config: str, format_name: str
) -> None:
    run = shipped_runs[config]
    result = run_cli("export", run, "--format", format_name)
    assert result.exit_code == 0, result.stderr
    folder = run / "exports" / format_name
    assert f"export written to {folder}" in result.stdout
    assert (folder / MODEL_FILES[format_name]).exists()
    assert (folder / "config.yaml").read_text() == (run / "config.yaml").read_text()
    exported = json.loads((folder / "export.json").read_text())
    check = exported["check"]
    assert exported["format"] == format_name
    assert check["passed"] is True
    assert check["rows"] == json.loads((run / "run.json").read_text())["examples"]["test"]
    assert check["max_abs_difference"] <= 1e-4
    assert check["same_class_share"] == 1.0
    assert exported["input_signature"]["shape"][1:] == json.loads((run / "run.json").read_text())["input_shape"]  # fmt: skip
    assert {"keras", "tensorflow"} <= set(exported["versions"])
    assert _leftovers(run) == []


@pytest.fixture(scope="module")
def student_export_run(shipped_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # fmt: skip
    """student_pass_rule's run (normalization, L2, dropout) and the data it was tested on."""
    run = shipped_runs["student_pass_rule"]
    data = tmp_path_factory.mktemp("student-data")
    result = CliRunner().invoke(app, ["data", str(run / "config.yaml"), "--out", str(data / "d")])
    assert result.exit_code == 0, result.stderr
    return run, data / "d"


@pytest.fixture
def run_copy(student_export_run: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the run (without the exports other tests made), to write into or break."""
    run = student_export_run[0]
    return Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("exports")))


@pytest.mark.slow
def test_predict_and_evaluate_with_exports_match_keras(
    run_cli: Cli, run_copy: Path, student_export_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """Same columns, rows, ids and classes as the Keras path; the same metrics."""
    data = student_export_run[1] / "test.csv"
    outputs, metrics = {}, {}
    for format_name in ("keras", "onnx", "tflite"):
        model = run_copy
        if format_name != "keras":
            assert run_cli("export", run_copy, "--format", format_name).exit_code == 0
            model = run_copy / "exports" / format_name / MODEL_FILES[format_name]
        output = tmp_path / f"{format_name}.csv"
        predicted = run_cli("predict", model, "--input", data, "--output", output)
        assert predicted.exit_code == 0, predicted.stderr
        assert predicted.stderr == ""
        outputs[format_name] = _rows(output)
        evaluated = run_cli("evaluate", model, "--data", data)
        assert evaluated.exit_code == 0, evaluated.stderr
        (folder,) = (model if model.is_dir() else model.parent).glob("evaluations/*")
        metrics[format_name] = json.loads((folder / "metrics.json").read_text())
        shutil.rmtree(folder.parent)
    keras_rows = outputs["keras"]
    for format_name in ("onnx", "tflite"):
        rows = outputs[format_name]
        assert list(rows[0]) == list(keras_rows[0]) == ["row", "label", "prob_fail", "prob_pass", "predicted"]  # fmt: skip
        assert [r["row"] for r in rows] == [r["row"] for r in keras_rows]
        assert [r["predicted"] for r in rows] == [r["predicted"] for r in keras_rows]
        for row, expected in zip(rows, keras_rows, strict=True):
            assert len(row["prob_pass"]) == len(expected["prob_pass"])  # 6 decimals, fixed point
            assert float(row["prob_pass"]) == pytest.approx(float(expected["prob_pass"]), abs=2e-6)
        exported, reference = metrics[format_name], metrics["keras"]
        assert (
            list(exported["metrics"]) == list(reference["metrics"]) == ["loss", "accuracy", "auc"]
        )
        for name, value in reference["metrics"].items():  # the loss includes the L2 penalty
            assert exported["metrics"][name] == pytest.approx(value, abs=1e-5)
        assert exported["classes"]["confusion_matrix"] == reference["classes"]["confusion_matrix"]


@pytest.mark.slow
def test_a_saved_model_folder_predicts_like_keras(
    run_cli: Cli, shipped_runs: dict[str, Path], tmp_path: Path
) -> None:
    """The CNN: the export folder itself given to predict, on the PNGs `dltool data` writes."""
    run = Path(shutil.copytree(shipped_runs["digits_cnn"], tmp_path / "run", ignore=shutil.ignore_patterns("exports")))  # fmt: skip
    assert run_cli("data", run / "config.yaml", "--out", tmp_path / "data").exit_code == 0
    assert run_cli("export", run, "--format", "saved_model").exit_code == 0
    outputs = []
    for model in (run, run / "exports" / "saved_model"):
        output = tmp_path / f"{len(outputs)}.csv"
        result = run_cli(
            "predict", model, "--input", tmp_path / "data" / "test", "--output", output
        )
        assert result.exit_code == 0, result.stderr
        outputs.append(_rows(output))
    keras_rows, exported_rows = outputs
    assert list(exported_rows[0]) == list(keras_rows[0])
    assert [r["predicted"] for r in exported_rows] == [r["predicted"] for r in keras_rows]
    assert [r["file"] for r in exported_rows] == [r["file"] for r in keras_rows]


@pytest.mark.slow
def test_augmentation_layers_are_inactive_in_every_export(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Keras traces augmentation layers active for export; dltool exports them as what they
    are at inference (nothing), so every format passes the check."""
    config = tiny_config(
        model={
            "input_shape": [12, 12, 1],
            "layers": [
                {"type": "random_flip"},
                {"type": "random_rotation", "factor": 0.1},
                {"type": "random_zoom", "height_factor": 0.1},
                {"type": "random_translation", "height_factor": 0.1, "width_factor": 0.1},
                {"type": "random_contrast", "factor": 0.2},
                {"type": "rescaling", "scale": "1/255"},
                {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                {"type": "batch_normalization"},
                {"type": "global_max_pooling2d"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        training={"loss": "sparse_categorical_crossentropy", "epochs": 1, "batch_size": 32},
    )
    config["data"] = {"source": "shapes", "n_train": 64, "n_test": 32, "image_size": 12}
    assert run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    for format_name in FORMATS:
        result = run_cli("export", run, "--format", format_name)
        assert result.exit_code == 0, result.stderr
        check = json.loads((run / "exports" / format_name / "export.json").read_text())["check"]
        assert check["max_abs_difference"] <= 1e-4


@pytest.fixture(scope="module")
def celu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose hidden layer uses celu: tf2onnx has no ONNX equivalent of its Expm1."""
    base = tmp_path_factory.mktemp("celu")
    layers = [
        {"type": "dense", "units": 4, "activation": "celu"},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ]
    config = base / "celu.yaml"
    config.write_text(yaml.safe_dump(tiny_config(model={"input_shape": [3], "layers": layers})))
    trained = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(base / "runs")])
    assert trained.exit_code == 0, trained.stderr
    (run,) = (base / "runs").iterdir()
    return run


@pytest.mark.slow
def test_a_layer_the_format_cannot_express_is_refused(run_cli: Cli, celu_run: Path) -> None:
    result = run_cli("export", celu_run, "--format", "onnx")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "error: onnx cannot express layer 'dense' (Dense, activation celu): it uses the "
        "operation Expm1, which onnx has no equivalent for; nothing was kept"
    )
    assert not (celu_run / "exports").exists()
    assert _leftovers(celu_run) == []
    assert run_cli("export", celu_run, "--format", "tflite").exit_code == 0  # TFLite can


@pytest.mark.slow
def test_an_export_that_differs_from_the_model_is_not_kept(
    run_cli: Cli, run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converter that changes the numbers (here: one weight) is caught by the check."""
    import keras

    from dltool import export

    def tampered(model: Any) -> Any:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        kernel = clone.layers[-1].kernel
        kernel.assign(kernel.numpy() + 0.5)
        return clone

    monkeypatch.setattr(export, "inference_model", tampered)
    result = run_cli("export", run_copy, "--format", "onnx")
    assert result.exit_code == 2
    assert "error: onnx: the export differs from model.keras on the test split of" in result.stderr
    assert "expected at most 0.0001); the same class in" in result.stderr
    assert result.stderr.rstrip().endswith("nothing was kept")
    assert not (run_copy / "exports").exists()
    assert _leftovers(run_copy) == []


@pytest.mark.slow
def test_a_tampered_export_is_warned_about(
    run_cli: Cli, run_copy: Path, student_export_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    assert run_cli("export", run_copy, "--format", "onnx").exit_code == 0
    path = run_copy / "exports" / "onnx" / "model.onnx"
    model = onnx.load(str(path))
    weights = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) + np.float32(1), weights.name))  # fmt: skip
    onnx.save(model, str(path))
    result = run_cli("predict", path, "--input", student_export_run[1] / "test.csv", "--output", tmp_path / "p.csv")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"warning: {path}: changed since dltool export checked it (export.json's sha256 "
        "differs); its results may differ from the run's\n"
    )


@pytest.mark.slow
def test_a_model_changed_after_training_is_caught(
    run_cli: Cli, run_copy: Path, student_export_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """run.json's model_sha256: predict and evaluate warn, export refuses."""
    from dltool.fingerprint import sha256_file

    info = json.loads((run_copy / "run.json").read_text())
    assert info["model_sha256"] == sha256_file(run_copy / "model.keras")
    data = student_export_run[1] / "test.csv"
    predicted = run_cli("predict", run_copy, "--input", data, "--output", tmp_path / "a.csv")
    assert (predicted.exit_code, predicted.stderr) == (0, "")
    import keras

    model = keras.saving.load_model(run_copy / "model.keras")
    model.layers[-1].bias.assign(model.layers[-1].bias.numpy() + 1.0)  # another model
    model.save(run_copy / "model.keras")
    for command in (("predict", "--input", data, "--output", tmp_path / "b.csv"), ("evaluate", "--data", data)):  # fmt: skip
        result = run_cli(command[0], run_copy, *command[1:])
        assert result.exit_code == 0, result.stderr
        assert result.stderr.startswith(f"warning: {run_copy / 'model.keras'}: changed since training (SHA-256 ")  # fmt: skip
        assert result.stderr.count("\n") == 1
    result = run_cli("export", run_copy, "--format", "saved_model")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {run_copy / 'model.keras'}: changed since training")
    assert "refusing to export a model that is not the one trained and tested" in result.stderr
    assert not (run_copy / "exports").exists()


@pytest.mark.slow
def test_an_existing_output_needs_overwrite(run_cli: Cli, run_copy: Path, tmp_path: Path) -> None:
    output = tmp_path / "served"
    assert run_cli("export", run_copy, "--format", "tflite", "--output", output).exit_code == 0
    first = (output / "export.json").read_text()
    result = run_cli("export", run_copy, "--format", "tflite", "--output", output)
    assert result.exit_code == 2
    assert result.stderr == f"error: {output}: exists (choose another --output, or add --overwrite)\n"  # fmt: skip
    assert (output / "export.json").read_text() == first
    again = run_cli("export", run_copy, "--format", "onnx", "--output", output, "--overwrite")
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in output.iterdir()) == ["config.yaml", "export.json", "model.onnx"]
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------- refused before TensorFlow starts


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """A completed run folder as far as its files go (the model is not a real one)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    (run / "model.keras").write_bytes(b"not a model")
    (run / "run.json").write_text(json.dumps({"status": "completed", "task": "binary"}))
    return run


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ("--format", "onx"),
            "completed",
            "error: --format: unknown format, did you mean 'onnx'? (received 'onx'; expected one of saved_model, tflite, onnx)",
        ),
        (
            ("--format", "onnx"),
            "failed",
            "error: {run}: the run is 'failed'; only completed runs can be used",
        ),
        (
            ("--format", "onnx"),
            "running",
            "error: {run}: the run is 'running'; only completed runs can be used",
        ),
        (
            ("--format", "onnx", "--output", "{run}"),
            "completed",
            "error: {run}: exists (choose another --output, or add --overwrite)",
        ),
    ],
    ids=["unknown-format", "failed-run", "unfinished-run", "output-exists"],
)
def test_refused_exports(run_cli: Cli, fake_run: Path, args: tuple[str, ...], status: str, message: str) -> None:  # fmt: skip
    info = json.loads((fake_run / "run.json").read_text())
    (fake_run / "run.json").write_text(json.dumps({**info, "status": status}))
    result = run_cli("export", fake_run, *(a.format(run=fake_run) for a in args))
    assert result.exit_code == 2
    assert result.stderr == message.format(run=fake_run) + "\n"
    assert not (fake_run / "exports").exists()


def test_overwrite_replaces_only_an_earlier_export(run_cli: Cli, fake_run: Path, tmp_path: Path) -> None:  # fmt: skip
    """--overwrite never deletes what is not an export: the run folder itself, a folder of
    other files, or a folder (even with an export.json) that holds the run."""
    other = tmp_path / "models"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    holder = tmp_path
    (holder / "export.json").write_text("{}")
    cases = {
        fake_run: f"error: {fake_run}: exists and is not an earlier export (no export.json in it); --overwrite only replaces an export (choose another --output)",
        other: f"error: {other}: exists and is not an earlier export (no export.json in it); --overwrite only replaces an export (choose another --output)",
        holder: f"error: {holder}: holds the run folder {fake_run}; choose another --output",
    }  # fmt: skip
    for output, message in cases.items():
        result = run_cli("export", fake_run, "--format", "onnx", "--output", output, "--overwrite")
        assert result.exit_code == 2
        assert result.stderr == message + "\n"
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in fake_run.iterdir()) == ["config.yaml", "model.keras", "run.json"]


def test_onnx_without_the_extra_says_how_to_install_it(
    run_cli: Cli, fake_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name in ("tf2onnx", "onnxruntime") else find_spec(name, *rest),
    )
    result = run_cli("export", fake_run, "--format", "onnx")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: dltool export --format onnx needs tf2onnx and onnxruntime, which are not "
        "installed (install them with: pip install 'dltool[export]')\n"
    )


def test_a_bare_onnx_file_is_not_an_export(run_cli: Cli, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = run_cli("predict", model, "--input", tmp_path / "x.csv")
    assert result.exit_code == 2
    assert "not in a dltool export folder (expected export.json beside it" in result.stderr


@pytest.mark.slow
def test_a_regression_run_exports_and_predicts(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """No classes: export.json has no same-class share, predict writes `predicted` alone."""
    layers = [{"type": "normalization"}, {"type": "dense", "units": 4}, {"type": "dense", "units": 1}]  # fmt: skip
    config = tiny_config(
        model={"input_shape": [3], "layers": layers},
        training={"loss": "mean_squared_error", "metrics": ["mean_absolute_error"], "epochs": 1},
    )
    assert run_cli("train", write_config(config), "--runs-dir", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    result = run_cli("export", run, "--format", "tflite")
    assert result.exit_code == 0, result.stderr
    assert "the same class" not in result.stdout
    check = json.loads((run / "exports" / "tflite" / "export.json").read_text())["check"]
    assert (check["passed"], check["same_class_share"]) == (True, None)
    (tmp_path / "x.csv").write_text("age,hours_studied,previous_score\n21,12.5,71\n")
    outputs = []
    for model in (run, run / "exports" / "tflite"):
        output = tmp_path / f"{len(outputs)}.csv"
        predicted = run_cli("predict", model, "--input", tmp_path / "x.csv", "--output", output)
        assert predicted.exit_code == 0, predicted.stderr
        outputs.append(_rows(output))
    assert list(outputs[0][0]) == list(outputs[1][0]) == ["row", "predicted"]
    assert float(outputs[1][0]["predicted"]) == pytest.approx(float(outputs[0][0]["predicted"]), abs=1e-4)  # fmt: skip
