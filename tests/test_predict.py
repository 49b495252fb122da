"""`dltool predict` and `dltool evaluate`: a finished run used on new files."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from dltool.messages import show

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        pytest.param(
            "",
            r"bad.csv: no header line \(the file is empty; expected column names on line 1\)",
            id="empty-file",
        ),
        pytest.param(None, r"bad.csv: no such file or folder$", id="missing-file"),
        pytest.param(
            "hours_studied,previous_score,Age\n3,50,20\n",
            r"missing feature column\(s\) 'age', did you mean 'Age'\?",
            id="hint-from-unused-column",
        ),
    ],
)
@pytest.mark.slow
def test_predict_refuses_bad_csv(
    run_cli: Cli, run_copy: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    if content is not None:
        bad.write_text(content)
    result = run_cli("predict", run_copy, "--input", bad)
    assert result.exit_code == 2, result.stdout
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (run_copy / "predictions").exists()  # not even an empty folder


@pytest.mark.slow
def test_bad_row_after_the_first_chunk_leaves_nothing(
    run_cli: Cli, run_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad cell found after a chunk was predicted and written: no file, no folder left."""
    monkeypatch.setattr("dltool.inputs.CSV_CHUNK_ROWS", 2)
    bad = tmp_path / "late.csv"
    bad.write_text("age,hours_studied,previous_score\n20,3,50\n21,4,60\n22,x,70\n")
    for output in (None, tmp_path / "new" / "deeper" / "p.csv"):
        extra = ("--output", output) if output else ()
        result = run_cli("predict", run_copy, "--input", bad, *extra)
        assert (result.exit_code, result.stderr) == (
            2,
            f"error: {bad}: line 4, column 'hours_studied': 'x' is not a number\n",
        )
    assert not (run_copy / "predictions").exists()
    assert not (tmp_path / "new").exists()


def test_hint_never_names_a_column_the_run_uses(tmp_path: Path) -> None:
    from dltool.errors import InputError
    from dltool.inputs import InputSpec, csv_chunks

    data = tmp_path / "iris.csv"
    data.write_text("petal_length,petal_width\n1.4,0.2\n")
    spec = InputSpec(input_shape=[3], feature_names=["sepal_length", "petal_length", "petal_width"])
    with pytest.raises(InputError) as refused:
        list(csv_chunks(data, spec, labelled=False))
    assert refused.value.lines == [
        f"{data}: missing feature column(s) 'sepal_length' (the run was trained on "
        "sepal_length, petal_length, petal_width; found petal_length, petal_width)"
    ]


@pytest.mark.slow
def test_folder_input_for_a_table_run_names_the_path(
    run_cli: Cli, run_copy: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for command, option in (("predict", "--input"), ("evaluate", "--data")):
        result = run_cli(command, run_copy, option, folder)
        assert (result.exit_code, result.stderr) == (
            2,
            f"error: {folder}: a folder, but this run was trained on a table "
            "(expected a .csv, .npy or .npz file)\n",
        )
    assert not (run_copy / "predictions").exists()
    assert not (run_copy / "evaluations").exists()


@pytest.mark.slow
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
@pytest.mark.slow
def test_predict_refuses_bad_arrays(
    run_cli: Cli, run_copy: Path, tmp_path: Path, make: Callable[[Path], Any], message: str
) -> None:
    path = tmp_path / "bad.npy"
    make(path)
    result = run_cli("predict", run_copy, "--input", path, "--output", tmp_path / "o.csv")
    assert result.exit_code == 2
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "o.csv").exists()


def _assert_same_as_training(folder: Path, run: Path) -> dict[str, Any]:
    """The evaluation in ``folder`` equals the run's own test metrics and confusion matrix."""
    evaluated = json.loads((folder / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert evaluated["examples"] == sum(map(sum, trained["test_classes"]["confusion_matrix"]["rows_true_columns_predicted"]))  # fmt: skip
    assert evaluated["metrics"]["accuracy"] == pytest.approx(trained["test"]["accuracy"], abs=1e-6)
    assert evaluated["metrics"]["loss"] == pytest.approx(trained["test"]["loss"], abs=1e-5)
    assert evaluated["classes"]["confusion_matrix"] == trained["test_classes"]["confusion_matrix"]
    for name, scores in trained["test_classes"]["per_class"].items():
        assert evaluated["classes"]["per_class"][name] == pytest.approx(scores)
    matrix = json.loads((folder / "confusion_matrix.json").read_text())
    assert matrix == trained["test_classes"]["confusion_matrix"]
    assert (folder / "confusion_matrix.png").stat().st_size > 1000
    return matrix


@pytest.mark.slow
def test_evaluate_matches_training_metrics(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path]
) -> None:
    result = run_cli("evaluate", run_copy, "--data", student_run[1] / "test.csv")
    assert result.exit_code == 0, result.stderr
    (folder,) = (run_copy / "evaluations").iterdir()
    matrix = _assert_same_as_training(folder, run_copy)
    assert "per class" in result.stdout
    assert "confusion matrix (rows: true, columns: predicted)" in result.stdout
    (fail, pass_) = matrix["rows_true_columns_predicted"]
    assert re.search(rf"│ fail +│ +{fail[0]} │ +{fail[1]} │", result.stdout), result.stdout
    assert re.search(rf"│ pass +│ +{pass_[0]} │ +{pass_[1]} │", result.stdout), result.stdout


@pytest.mark.slow
def test_evaluate_streams_chunks_with_the_same_result(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scored 7 rows at a time, in batches of 3: the same numbers as one pass in training."""
    monkeypatch.setattr("dltool.inputs.CSV_CHUNK_ROWS", 7)
    result = run_cli(
        "evaluate", run_copy, "--data", student_run[1] / "test.csv", "--batch-size", "3"
    )
    assert result.exit_code == 0, result.stderr
    (folder,) = (run_copy / "evaluations").iterdir()
    _assert_same_as_training(folder, run_copy)


@pytest.mark.slow
def test_evaluate_npz(run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], tmp_path: Path) -> None:  # fmt: skip
    rows = _rows(student_run[1] / "test.csv")
    features = [[float(r[c]) for c in ("age", "hours_studied", "previous_score")] for r in rows]
    labels = [["fail", "pass"].index(r["label"]) for r in rows]
    np.savez(tmp_path / "test.npz", x=np.asarray(features), y=np.asarray(labels))
    result = run_cli("evaluate", run_copy, "--data", tmp_path / "test.npz")
    assert result.exit_code == 0, result.stderr
    assert f"{len(rows)} examples from {tmp_path / 'test.npz'}" in result.stdout
    (folder,) = (run_copy / "evaluations").iterdir()
    _assert_same_as_training(folder, run_copy)
    np.savez(tmp_path / "unlabelled.npz", x=np.asarray(features))
    refused = run_cli("evaluate", run_copy, "--data", tmp_path / "unlabelled.npz")
    assert (refused.exit_code, refused.stderr) == (
        2,
        f"error: {tmp_path / 'unlabelled.npz'}: no labels array 'y' beside 'x' (found x)\n",
    )
    assert len(list((run_copy / "evaluations").iterdir())) == 1


@pytest.mark.slow
def test_evaluate_takes_the_label_column_by_name(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], tmp_path: Path
) -> None:
    text = (student_run[1] / "test.csv").read_text()
    header, rest = text.split("\n", 1)
    renamed = tmp_path / "passed.csv"
    renamed.write_text(header.replace("label", "passed") + "\n" + rest)
    refused = run_cli("evaluate", run_copy, "--data", renamed)
    assert (refused.exit_code, refused.stderr) == (
        2,
        f"error: {renamed}: no label column 'label' (found {header.replace('label', 'passed').replace(',', ', ')}; "
        "name the label column with --target COLUMN)\n",
    )
    result = run_cli("evaluate", run_copy, "--data", renamed, "--target", "passed")
    assert result.exit_code == 0, result.stderr
    (folder,) = (run_copy / "evaluations").iterdir()
    _assert_same_as_training(folder, run_copy)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.parametrize(("command", "option"), [("predict", "--input"), ("evaluate", "--data")])
@pytest.mark.slow
def test_incomplete_run_is_refused(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], command: str, option: str
) -> None:
    (run_copy / "model.keras").unlink()
    before = sorted(p.name for p in run_copy.iterdir())
    result = run_cli(command, run_copy, option, student_run[1] / "test.csv")
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {run_copy}: model.keras is missing (the run folder is incomplete)\n",
    )
    assert sorted(p.name for p in run_copy.iterdir()) == before  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "option", "names"),
    [
        ("predict", "--input", ["a", "b", "c"]),  # was an IndexError
        ("predict", "--input", ["a"]),  # was silently one prob_ column
        ("evaluate", "--data", ["a", "a"]),
        ("predict", "--input", "ab"),
        ("evaluate", "--data", [0, 1]),
    ],
)
def test_class_names_that_do_not_fit_the_model_are_refused(
    run_cli: Cli,
    run_copy: Path,
    student_run: tuple[Path, Path],
    command: str,
    option: str,
    names: object,
) -> None:
    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**info, "class_names": names}))
    before = sorted(p.name for p in run_copy.iterdir())
    result = run_cli(command, run_copy, option, student_run[1] / "test.csv")
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {run_copy / 'run.json'}: class_names does not fit the model (received "
        f"{show(names)}; expected 2 different names for its 1 output)\n",
    )
    assert sorted(p.name for p in run_copy.iterdir()) == before  # nothing written


def _after_changed_warning(stderr: str, run: Path) -> str:
    """stderr without its first line, which must warn that model.keras changed since training
    (the tests below plant another model: run.json's model_sha256 no longer matches)."""
    warning, _, rest = stderr.partition("\n")
    assert warning.startswith(f"warning: {run / 'model.keras'}: changed since training"), stderr
    return rest


@pytest.mark.slow
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
        _after_changed_warning(result.stderr, run_copy)
        == f"error: {run_copy / 'model.keras'}: it contains a Lambda layer (Python code), which safe mode refuses to run\n"
    )
    data = (run_copy / "model.keras").read_bytes()
    (run_copy / "model.keras").write_bytes(data[: len(data) // 3])
    result = run_cli("predict", run_copy, "--input", student_run[1] / "test.csv")
    assert (
        _after_changed_warning(result.stderr, run_copy)
        == f"error: {run_copy / 'model.keras'}: not a .keras model archive (truncated, or another kind of file)\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["../../evil.txt", "/etc/evil", "assets/../../evil", "C:/evil"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_refuses_a_model_archive_with_an_entry_outside_it(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path], entry: str, command: str
) -> None:
    import zipfile

    with zipfile.ZipFile(run_copy / "model.keras", "a") as archive:
        archive.writestr(entry, "x")
    option = "--input" if command == "predict" else "--data"
    before = sorted(p.name for p in run_copy.iterdir())
    result = run_cli(command, run_copy, option, student_run[1] / "test.csv")
    assert (result.exit_code, _after_changed_warning(result.stderr, run_copy)) == (
        2,
        f"error: {run_copy / 'model.keras'}: refused: the archive has an entry that points "
        f"outside it ({entry!r}); a .keras file saved by Keras never does\n",
    )
    assert sorted(p.name for p in run_copy.iterdir()) == before


@pytest.mark.slow
def test_refuses_a_model_archive_with_a_corrupt_directory(
    run_cli: Cli, run_copy: Path, student_run: tuple[Path, Path]
) -> None:
    """is_zipfile reads only the end record: a damaged central directory was an internal error."""
    model = run_copy / "model.keras"
    model.write_bytes(model.read_bytes().replace(b"PK\x01\x02", b"XXXX", 1))
    result = run_cli("predict", run_copy, "--input", student_run[1] / "test.csv")
    assert (result.exit_code, _after_changed_warning(result.stderr, run_copy)) == (
        2,
        f"error: {model}: not a .keras model archive (truncated or corrupt)\n",
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


@pytest.mark.slow
def test_exported_digit_images_evaluate_like_training(
    run_cli: Cli, digits_run: Path, tmp_path: Path
) -> None:
    """`dltool data`'s PNGs (pixels x15 to be visible) are read back in the 0..16 range trained on."""
    assert json.loads((digits_run / "run.json").read_text())["image_file_scale"] == 15
    exported = run_cli("data", digits_run / "config.yaml", "--out", tmp_path / "data")
    assert exported.exit_code == 0, exported.stderr
    assert "pixel values were multiplied by 15 in the PNGs" in exported.stdout
    before = set((digits_run / "evaluations").iterdir()) if (digits_run / "evaluations").exists() else set()  # fmt: skip
    result = run_cli("evaluate", digits_run, "--data", tmp_path / "data" / "test")
    assert result.exit_code == 0, result.stderr
    (folder,) = set((digits_run / "evaluations").iterdir()) - before
    _assert_same_as_training(folder, digits_run)
    predicted = run_cli(
        "predict", digits_run, "--input", tmp_path / "data" / "test", "--output", tmp_path / "p.csv"
    )
    assert predicted.exit_code == 0, predicted.stderr
    in_run = {int(r["index"]): r for r in _rows(digits_run / "predictions.csv")}
    by_file = _rows(tmp_path / "p.csv")
    assert len(by_file) == len(in_run)
    for row in by_file:  # test/<class>/<index in the test split>.png
        index = int(Path(row["file"]).stem)
        assert row["predicted"] == in_run[index]["predicted"]
        assert float(row["prob_3"]) == pytest.approx(float(in_run[index]["prob_3"]), abs=1e-5)


def _digit_pngs(folder: Path, count: int = 6, size: int = 8) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(count):
        label = str(digits.target[i])
        pixels = (digits.images[i] * 15).astype("uint8")  # 0..16 -> 0..240, as `dltool data` writes
        image = Image.fromarray(pixels, mode="L").resize((size, size))
        (folder / label).mkdir(parents=True, exist_ok=True)
        image.save(folder / label / f"{i}.png")


@pytest.mark.slow
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


@pytest.mark.slow
def test_images_of_another_size_are_resized(run_cli: Cli, digits_run: Path, tmp_path: Path) -> None:
    _digit_pngs(tmp_path / "big", count=2, size=32)
    result = run_cli(
        "predict", digits_run, "--input", tmp_path / "big", "--output", tmp_path / "p.csv"
    )
    assert result.exit_code == 0, result.stderr
    assert "note: 2 image(s) were resized to 8x8 (bilinear), as in training" in result.stdout


@pytest.mark.slow
def test_unreadable_image_refused(run_cli: Cli, digits_run: Path, tmp_path: Path) -> None:
    _digit_pngs(tmp_path / "images", count=2)
    broken = tmp_path / "images" / "0" / "broken.png"
    broken.write_bytes(b"not an image")
    result = run_cli(
        "predict", digits_run, "--input", tmp_path / "images", "--output", tmp_path / "p.csv"
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {broken}: not a readable image (Pillow does not recognise its contents)\n"
    )
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
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


def test_report_from_matrix_equals_scikit_learn() -> None:
    """Per-class scores summed chunk by chunk are scikit-learn's (zero_division=0)."""
    from sklearn.metrics import classification_report

    from dltool.evaluation import confusion_counts, report_from_matrix

    rng = np.random.default_rng(0)
    true, predicted = rng.integers(0, 4, 500), rng.integers(0, 3, 500)  # class 3 never predicted
    names = ["a", "b", "c", "d"]
    halves = confusion_counts(true[:200], predicted[:200], 4) + confusion_counts(
        true[200:], predicted[200:], 4
    )
    ours = report_from_matrix(halves, names)
    theirs = classification_report(
        true, predicted, labels=[0, 1, 2, 3], target_names=names, output_dict=True, zero_division=0
    )
    for name in names:
        assert ours["per_class"][name] == pytest.approx(theirs[name])
    assert ours["macro_avg"] == pytest.approx(theirs["macro avg"])
    assert ours["weighted_avg"] == pytest.approx(theirs["weighted avg"])


def test_predicted_values_are_fixed_point_text() -> None:
    """1e-06 in a CSV reads as text to some tools and hides the decimals: write 0.000001."""
    from types import SimpleNamespace

    from dltool.evaluation import Predictions, predictions_table
    from dltool.predict import _prediction_columns

    raw = np.array([[1e-6], [0.5], [1.0], [2e-7]], dtype="float32")
    run = SimpleNamespace(
        info={"task": "binary"},
        config=SimpleNamespace(task="binary"),
        task="binary",
        class_names=["fail", "pass"],
    )
    columns = _prediction_columns(raw, run)  # type: ignore[arg-type]
    assert list(columns["prob_pass"]) == ["0.000001", "0.500000", "1.000000", "0.000000"]
    assert list(columns["prob_fail"]) == ["0.999999", "0.500000", "0.000000", "1.000000"]
    regression = SimpleNamespace(
        info={"task": "regression"},
        config=SimpleNamespace(task="regression"),
        task="regression",
        class_names=None,
    )
    assert list(_prediction_columns(np.array([[3e-7], [-12.5]]), regression)["predicted"]) == ["0.000000", "-12.500000"]  # type: ignore[arg-type]  # fmt: skip
    tested = Predictions("binary", raw, np.array([[0], [1], [1], [0]]), ["fail", "pass"])
    _, rows = predictions_table(tested)
    assert next(iter(rows)) == [0, "fail", "fail", True, "0.999999", "0.000001"]


# ------------------------------------------------ the output CSV, written beside the model calls

FEATURES = ["age", "hours_studied", "previous_score"]


class _Runtime:
    """A stand-in model (no TensorFlow): a sigmoid of the features, float32 as Keras gives."""

    def __init__(self, fail_at_call: int | None = None, error: BaseException | None = None) -> None:
        self.calls = 0
        self.fail_at_call, self.error = fail_at_call, error

    def predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_at_call and self.error is not None:
            raise self.error
        score = x @ np.array([0.05, 0.1, 0.02]) - 4.0
        return (1 / (1 + np.exp(-score)))[:, None].astype("float32")


def _stand_in_run(tmp_path: Path, runtime: _Runtime) -> Any:
    from types import SimpleNamespace

    from dltool.inputs import InputSpec

    return SimpleNamespace(
        path=tmp_path,
        task="binary",
        class_names=["fail", "pass"],
        runtime=lambda: runtime,
        input_spec=lambda: InputSpec(input_shape=[3], feature_names=list(FEATURES)),
    )


def _write_csv(path: Path, rows: int, odd_row: int | None = None) -> np.ndarray:
    """A CSV with two id columns (leading zeros, empty cells, accents) around the features;
    ``odd_row``'s id needs CSV quoting. Returns the features as read."""
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.integers(17, 31, rows), rng.uniform(0, 40, rows), rng.uniform(0, 100, rows)])  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "age", "hours_studied", "note", "previous_score"])
        for i, (age, hours, score) in enumerate(x):
            student = 'a,"b"' if i == odd_row else f"{i:03d}"
            writer.writerow([student, int(age), f"{hours:.3f}", "" if i % 3 else "élève", f"{score:.3f}"])  # fmt: skip
    return np.round(x, 3)


def _as_before(path: Path, chunk_rows: int) -> str:
    """What `dltool predict` wrote before the output was built by numpy in a thread: pandas'
    ``to_csv`` of each chunk, values formatted by ``np.char.mod``."""
    import io

    import pandas as pd

    frame = pd.read_csv(path, dtype={"student": str, "note": str}, keep_default_na=False, na_values=[""])  # fmt: skip
    out = io.StringIO(newline="")
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        p = _Runtime().predict(part[FEATURES].to_numpy("float32"), 1024)[:, 0]
        probabilities = np.char.mod("%.6f", np.column_stack([1.0 - p, p]).astype("float64"))
        columns = {
            "row": np.arange(start, start + len(part)),
            "student": part["student"].fillna("").to_numpy(),
            "note": part["note"].fillna("").to_numpy(),
            "prob_fail": probabilities[:, 0],
            "prob_pass": probabilities[:, 1],
            "predicted": np.array(["fail", "pass"], dtype=object)[(p > 1 - p).astype(int)],
        }
        pd.DataFrame(columns).to_csv(out, header=start == 0, index=False)
    return out.getvalue()


@pytest.mark.parametrize("odd_row", [None, 12], ids=["plain ids", "an id pandas quotes"])
def test_output_is_byte_for_byte_what_pandas_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd_row: int | None
) -> None:
    """Numbers formatted and rows built by numpy, a chunk that needs quoting left to pandas:
    the file is the one pandas' to_csv wrote, chunk after chunk."""
    from dltool.predict import predict_file

    monkeypatch.setattr("dltool.inputs.CSV_CHUNK_ROWS", 5)
    monkeypatch.setattr("dltool.predict.WRITE_ROWS", 3)  # each chunk written in two parts
    source = tmp_path / "in.csv"
    _write_csv(source, 23, odd_row)
    runtime = _Runtime()
    result = predict_file(_stand_in_run(tmp_path, runtime), source, tmp_path / "out.csv", 4)
    written = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert written == _as_before(source, 5)
    assert (runtime.calls, result.rows) == (5, 23)
    assert result.header == ["row", "student", "note", "prob_fail", "prob_pass", "predicted"]
    assert result.first_rows[0][:3] == [0, "000", "élève"]
    assert len(result.first_rows) == 5
    assert sum(result.counts.values()) == 23
    assert set(result.seconds) == {"load", "read", "predict", "write", "write_behind"}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name != "in.csv")


@pytest.mark.parametrize(
    "failure",
    ["a bad cell after a written chunk", "the writer fails", "Ctrl-C while predicting"],
)
def test_a_failure_in_any_thread_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Whichever thread fails (reading, writing, or this one interrupted), the error reaches
    the caller, the writer thread ends, and no file or folder is left."""
    import threading

    from dltool.errors import InputError
    from dltool.predict import predict_file

    monkeypatch.setattr("dltool.inputs.CSV_CHUNK_ROWS", 5)
    source = tmp_path / "in.csv"
    _write_csv(source, 40)
    runtime = _Runtime()
    expected: type[BaseException] = OSError
    if failure == "a bad cell after a written chunk":
        lines = source.read_text().splitlines()
        cells = lines[28].split(",")
        lines[28] = ",".join([cells[0], "x", *cells[2:]])  # line 29 (chunk 6): age "x"
        source.write_text("\n".join(lines) + "\n")
        expected = InputError
    elif failure == "the writer fails":
        import dltool.predict

        real = dltool.predict.csv_text
        calls = iter(range(100))

        def failing(columns: dict[str, Any], header: bool) -> str | None:
            if next(calls) == 2:
                raise OSError(28, "No space left on device")
            return real(columns, header)

        monkeypatch.setattr(dltool.predict, "csv_text", failing)
    else:
        runtime = _Runtime(fail_at_call=4, error=KeyboardInterrupt())
        expected = KeyboardInterrupt
    threads = threading.active_count()
    with pytest.raises(expected):
        predict_file(_stand_in_run(tmp_path, runtime), source, tmp_path / "new" / "out.csv", 4)
    assert _leftovers(tmp_path) == []
    assert threading.active_count() == threads


def test_csv_text_is_what_pandas_writes() -> None:
    import io

    import pandas as pd

    from dltool.csvtext import csv_text
    from dltool.evaluation import fixed_point

    rng = np.random.default_rng(0)
    probabilities = fixed_point(rng.random((300, 2)))
    columns = {
        "row": np.arange(300),
        "id": np.array([f"s{i}" if i % 7 else "" for i in range(300)], dtype=object),
        "file": [f"/x/é{i} 😀.png" for i in range(300)],
        "name": np.array([f"né {i}" for i in range(300)]),  # a numpy string array, not ASCII
        "prob_a": probabilities[:, 0],  # a strided column
        "prob_b": probabilities[:, 1],
        "predicted": fixed_point(rng.standard_normal(300) * 1e4),
    }
    for header in (True, False):
        expected = io.StringIO(newline="")
        pd.DataFrame(columns).to_csv(expected, header=header, index=False)
        assert csv_text(columns, header) == expected.getvalue()


ODD_IDS = {
    "comma": "a,b",
    "quote": 'say "hi"',
    "newline": "two\nlines",
    "carriage return": "cr\r",
    "NUL": "nul\x00",
    "a float": 1.5,
    "None": None,
}


@pytest.mark.parametrize("odd", ODD_IDS.values(), ids=ODD_IDS.keys())
def test_csv_text_leaves_to_pandas_what_it_would_write_otherwise(odd: Any) -> None:
    from dltool.csvtext import csv_text

    columns = {"row": np.arange(2), "id": np.array([odd, "c"], dtype=object), "predicted": np.array(["0.1", "0.2"])}  # fmt: skip
    assert csv_text(columns, header=True) is None
    if isinstance(odd, str) and odd[-1] != "\x00":  # numpy's strings drop a NUL at the end
        assert csv_text({**columns, "id": np.array([odd, "c"])}, header=True) is None
    assert csv_text({"a,b": np.arange(2), "predicted": np.array(["0.1", "0.2"])}, header=True) is None  # fmt: skip
    assert csv_text({"n": np.array([1.5, 2.5]), "predicted": np.array(["1", "2"])}, header=True) is None  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_leaves_nothing(student_run: tuple[Path, Path], tmp_path: Path) -> None:
    """A real SIGINT while `dltool predict` reads, predicts and writes in its threads: exit
    130, 'interrupted', and neither the output nor its folder is left."""
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "big.csv"
    _write_csv(source, 400_000)
    output = tmp_path / "out" / "p.csv"
    dltool = Path(sys.executable).with_name("dltool")
    command = [str(dltool), "predict", str(student_run[0]), "--input", str(source), "--output", str(output)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (output.parent.exists() and any(output.parent.iterdir())):  # its temporary file
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (130, "interrupted\n")
    assert not output.parent.exists()
