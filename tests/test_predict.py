"""`dltool predict` and `dltool evaluate`: a finished run used on new files."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config

Cli = Callable[..., Any]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def student_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained tabular run and the exact data it saw (written by `dltool data`)."""
    import yaml
    from typer.testing import CliRunner

    from dltool.cli import app

    base = tmp_path_factory.mktemp("student")
    config = base / "exp.yaml"
    config.write_text(yaml.safe_dump(tiny_config(training={"epochs": 2})))
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(config), "--runs-dir", str(base / "runs")])
    assert trained.exit_code == 0, trained.stderr
    exported = runner.invoke(app, ["data", str(config), "--out", str(base / "data")])
    assert exported.exit_code == 0, exported.stderr
    (run,) = (base / "runs").iterdir()
    return run, base / "data"


@pytest.fixture
def run_copy(student_run: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the run, for tests that write into it or break it."""
    return Path(shutil.copytree(student_run[0], tmp_path / "run"))


def test_predict_raw_csv_matches_training(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, data = student_run
    # Columns in another order, plus an id column: both are fine.
    rows = _rows(data / "test.csv")
    shuffled = tmp_path / "new.csv"
    with open(shuffled, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "previous_score", "hours_studied", "age"])
        for i, row in enumerate(rows):
            writer.writerow([f"s{i}", row["previous_score"], row["hours_studied"], row["age"]])
    result = run_cli("predict", run_copy, "--input", shuffled)
    assert result.exit_code == 0, result.stderr
    (written,) = (run_copy / "predictions").iterdir()
    assert f"predictions written to {written}" in result.stdout
    predicted = _rows(written)
    assert list(predicted[0]) == ["row", "student_id", "prob_fail", "prob_pass", "predicted"]
    assert [r["student_id"] for r in predicted] == [f"s{i}" for i in range(len(rows))]
    in_run = _rows(run_copy / "predictions.csv")
    np.testing.assert_allclose(
        [float(r["prob_pass"]) for r in predicted],
        [float(r["prob_pass"]) for r in in_run],
        atol=1e-5,
    )
    assert [r["predicted"] for r in predicted] == [r["predicted"] for r in in_run]
    assert "predicted classes: fail" in result.stdout


def test_default_output_never_overwrites(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], tmp_path: Path
) -> None:
    source = student_run[1] / "test.csv"
    for _ in range(2):
        assert run_cli("predict", run_copy, "--input", source).exit_code == 0
    assert len(list((run_copy / "predictions").iterdir())) == 2
    output = tmp_path / "mine.csv"
    output.write_text("keep me")
    result = run_cli("predict", run_copy, "--input", source, "--output", output)
    assert result.exit_code == 2
    assert (
        result.stderr == f"error: {output}: exists (choose another --output, or add --overwrite)\n"
    )
    assert output.read_text() == "keep me"
    assert (
        run_cli("predict", run_copy, "--input", source, "--output", output, "--overwrite").exit_code
        == 0
    )
    assert output.read_text().startswith(
        "row,label,prob_fail,prob_pass,predicted"
    )  # other columns kept


def test_model_file_as_run(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "predict",
        run_copy / "model.keras",
        "--input",
        student_run[1] / "test.csv",
        "--output",
        tmp_path / "o.csv",
    )
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "age,hours_studied\n20,3\n",
            r"missing feature column\(s\) 'previous_score' \(the run was trained on age, hours_studied, previous_score; found age, hours_studied\)",
            id="missing-column",
        ),
        pytest.param(
            "age,hours_studid,previous_score\n20,3,50\n",
            r"missing feature column\(s\) 'hours_studied', did you mean 'hours_studid'\?",
            id="misspelled-column",
        ),
        pytest.param(
            "age,hours_studied,previous_score\n20,3,50\n21,abc,50\n",
            r"line 3, column 'hours_studied': 'abc' is not a number",
            id="non-numeric",
        ),
        pytest.param(
            "age,hours_studied,previous_score\n20,,50\n",
            r"line 2, column 'hours_studied': an empty cell",
            id="empty-cell",
        ),
        pytest.param(
            "age,hours_studied,previous_score\n",
            r"no examples to predict \(the input is empty\)",
            id="header-only",
        ),
        pytest.param("", r"not a readable CSV file", id="empty-file"),
    ],
)
def test_predict_refuses_bad_csv(
    run_cli: Cli, run_copy: Path, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    result = run_cli("predict", run_copy, "--input", bad)
    assert result.exit_code == 2, result.stdout
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert pytest.importorskip("re").search(message, result.stderr), result.stderr
    assert not (run_copy / "predictions").exists() or not list((run_copy / "predictions").iterdir())


def test_predict_arrays(run_cli: Cli, run_copy: Path, tmp_path: Path) -> None:
    rows = np.array([[21, 12.5, 71], [25, 2, 35]], dtype="float64")
    np.save(tmp_path / "x.npy", rows)
    result = run_cli(
        "predict", run_copy, "--input", tmp_path / "x.npy", "--output", tmp_path / "out.csv"
    )
    assert result.exit_code == 0, result.stderr
    assert [r["index"] for r in _rows(tmp_path / "out.csv")] == ["0", "1"]
    np.savez(tmp_path / "x.npz", x=rows)
    assert (
        run_cli(
            "predict", run_copy, "--input", tmp_path / "x.npz", "--output", tmp_path / "out2.csv"
        ).exit_code
        == 0
    )
    assert _rows(tmp_path / "out.csv") == _rows(tmp_path / "out2.csv")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda p: np.save(p, np.zeros((2, 4))),
            r"examples have shape \[4\]; the model takes \[3\]",
            id="wrong-shape",
        ),
        pytest.param(
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object)),
            r"holds Python objects \(pickled data\), which dltool never loads",
            id="pickle",
        ),
        pytest.param(
            lambda p: p.write_text("1,2,3\n"), r"not a NumPy .npy/.npz file", id="text-named-npy"
        ),
    ],
)
def test_predict_refuses_bad_arrays(
    run_cli: Cli, run_copy: Path, tmp_path: Path, make: Callable[[Path], Any], message: str
) -> None:
    path = tmp_path / "bad.npy"
    make(path)
    result = run_cli("predict", run_copy, "--input", path, "--output", tmp_path / "o.csv")
    assert result.exit_code == 2
    assert pytest.importorskip("re").search(message, result.stderr), result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_evaluate_matches_training_metrics(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path]
) -> None:
    result = run_cli("evaluate", run_copy, "--data", student_run[1] / "test.csv")
    assert result.exit_code == 0, result.stderr
    (folder,) = (run_copy / "evaluations").iterdir()
    evaluated = json.loads((folder / "metrics.json").read_text())
    trained = json.loads((run_copy / "metrics.json").read_text())
    assert evaluated["metrics"]["accuracy"] == pytest.approx(trained["test"]["accuracy"], abs=1e-6)
    assert evaluated["metrics"]["loss"] == pytest.approx(trained["test"]["loss"], abs=1e-5)
    assert evaluated["classes"]["confusion_matrix"] == trained["test_classes"]["confusion_matrix"]
    assert (folder / "confusion_matrix.png").stat().st_size > 1000
    assert "per class" in result.stdout


def test_evaluate_refuses_unknown_labels(run_cli: Cli, run_copy: Path, tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    data.write_text("age,hours_studied,previous_score,label\n20,3,50,pass\n20,3,50,maybe\n")
    result = run_cli("evaluate", run_copy, "--data", data)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {data}: labels 'maybe' are not classes of this run (expected one of fail, pass)\n"
    )
    assert not (run_copy / "evaluations").exists()


def test_refuses_runs_that_cannot_be_used(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], tmp_path: Path
) -> None:
    source = student_run[1] / "test.csv"
    missing = run_cli("predict", tmp_path / "nope", "--input", source)
    assert (missing.exit_code, missing.stderr) == (
        2,
        f"error: {tmp_path / 'nope'}: no such run folder\n",
    )
    not_run = tmp_path / "plain"
    not_run.mkdir()
    result = run_cli("predict", not_run, "--input", source)
    assert (
        result.stderr
        == f"error: {not_run}: not a dltool run folder (expected run.json and config.yaml in it)\n"
    )
    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(
        json.dumps({**info, "status": "failed", "error": "training: the loss became nan"})
    )
    result = run_cli("predict", run_copy, "--input", source)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {run_copy}: the run is 'failed': training: the loss became nan; only completed runs can be used\n"
    )
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n")
    result = run_cli("predict", h5, "--input", source)
    assert result.exit_code == 2
    assert "HDF5 models are refused" in result.stderr


def test_refuses_unsafe_and_broken_models(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path]
) -> None:
    from dltool.backend import import_keras

    keras = import_keras()
    planted = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(1)]
    )
    planted.save(run_copy / "model.keras")
    result = run_cli("predict", run_copy, "--input", student_run[1] / "test.csv")
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {run_copy / 'model.keras'}: it contains a Lambda layer (Python code), which safe mode refuses to run\n"
    )
    data = (run_copy / "model.keras").read_bytes()
    (run_copy / "model.keras").write_bytes(data[: len(data) // 3])
    result = run_cli("predict", run_copy, "--input", student_run[1] / "test.csv")
    assert (
        result.stderr
        == f"error: {run_copy / 'model.keras'}: not a .keras model archive (truncated, or another kind of file)\n"
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN on 8x8 digit images (1 epoch)."""
    import yaml
    from typer.testing import CliRunner

    from dltool.cli import app

    base = tmp_path_factory.mktemp("digits")
    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "digits_cnn.yaml").read_text())
    config["training"]["epochs"] = 1
    path = base / "digits.yaml"
    path.write_text(yaml.safe_dump(config))
    trained = CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(base / "runs")])
    assert trained.exit_code == 0, trained.stderr
    (run,) = (base / "runs").iterdir()
    return run


def _digit_pngs(folder: Path, count: int = 6, size: int = 8) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(count):
        label = str(digits.target[i])
        image = Image.fromarray(digits.images[i].astype("uint8"), mode="L").resize((size, size))
        (folder / label).mkdir(parents=True, exist_ok=True)
        image.save(folder / label / f"{i}.png")


def test_predict_and_evaluate_images(run_cli: Cli, digits_run: Path, tmp_path: Path) -> None:
    _digit_pngs(tmp_path / "images")
    result = run_cli(
        "predict", digits_run, "--input", tmp_path / "images", "--output", tmp_path / "p.csv"
    )
    assert result.exit_code == 0, result.stderr
    rows = _rows(tmp_path / "p.csv")
    assert len(rows) == 6
    assert list(rows[0]) == ["file", *(f"prob_{d}" for d in range(10)), "predicted"]
    single = next((tmp_path / "images").rglob("*.png"))
    assert (
        run_cli(
            "predict", digits_run, "--input", single, "--output", tmp_path / "one.csv"
        ).exit_code
        == 0
    )
    evaluated = run_cli("evaluate", digits_run, "--data", tmp_path / "images")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert "6 examples from" in evaluated.stdout


def test_images_of_another_size_are_resized(run_cli: Cli, digits_run: Path, tmp_path: Path) -> None:
    _digit_pngs(tmp_path / "big", count=2, size=32)
    result = run_cli(
        "predict", digits_run, "--input", tmp_path / "big", "--output", tmp_path / "p.csv"
    )
    assert result.exit_code == 0, result.stderr
    assert "note: 2 image(s) were resized to 8x8 (bilinear), as in training" in result.stdout


def test_unreadable_image_refused(run_cli: Cli, digits_run: Path, tmp_path: Path) -> None:
    _digit_pngs(tmp_path / "images", count=2)
    broken = tmp_path / "images" / "0" / "broken.png"
    broken.write_bytes(b"not an image")
    result = run_cli(
        "predict", digits_run, "--input", tmp_path / "images", "--output", tmp_path / "p.csv"
    )
    assert result.exit_code == 2
    assert result.stderr == f"error: {broken}: not a readable image (UnidentifiedImageError)\n"
    assert not (tmp_path / "p.csv").exists()


def test_csv_run_predicts_raw_rows_like_training(run_cli: Cli, tmp_path: Path) -> None:
    """Train on a CSV file, then predict its raw test rows: the same probabilities as in the run."""
    import yaml

    from conftest import CONFIGS

    config = yaml.safe_load((CONFIGS / "iris_csv.yaml").read_text())
    config["data"]["path"] = str(CONFIGS / "data" / "iris.csv")
    config["training"]["epochs"] = 3
    path = tmp_path / "iris.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("train", path, "--runs-dir", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run_cli("data", path, "--out", tmp_path / "data").exit_code == 0
    raw = _rows(tmp_path / "data" / "test.csv")
    assert float(raw[0]["sepal_length"]) > 4  # raw centimetres, not normalized values
    result = run_cli(
        "predict", run, "--input", tmp_path / "data" / "test.csv", "--output", tmp_path / "p.csv"
    )
    assert result.exit_code == 0, result.stderr
    predicted, in_run = _rows(tmp_path / "p.csv"), _rows(run / "predictions.csv")
    assert [r["species"] for r in predicted] == [r["true"] for r in in_run]  # extra column kept
    for name in ("setosa", "versicolor", "virginica"):
        np.testing.assert_allclose(
            [float(r[f"prob_{name}"]) for r in predicted],
            [float(r[f"prob_{name}"]) for r in in_run],
            atol=1e-5,
        )
