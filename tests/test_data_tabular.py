"""``source: csv`` and ``source: numpy``: tables and arrays in, every refusal one clear line."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import assert_stratified, tiny_config
from dltool.data import load_dataset
from dltool.data.tabular import CsvData, NumpyData
from dltool.errors import DataError

# ------------------------------------------------------------------------ helpers

TABLE = "a,b,kind\n1,2,y\n3,4,x\n5,6,y\n7,8,z\n"  # string labels, not in order


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _csv(folder: Path, text: str = TABLE, **settings: Any) -> CsvData:
    path = _write(folder, "train.csv", text)
    return CsvData.model_validate(
        {"source": "csv", "path": str(path), "target": "kind", **settings}
    )


def _npz(folder: Path, name: str = "data.npz", **arrays: Any) -> NumpyData:
    np.savez(folder / name, **arrays)
    return NumpyData.model_validate({"source": "numpy", "path": str(folder / name)})


def _problems(config: Any, task: str = "multiclass") -> list[str]:
    with pytest.raises(DataError) as caught:
        config.load(0, task)
    return caught.value.lines


def _assert_lines(lines: list[str], expected: list[str]) -> None:
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"


# --------------------------------------------------------------------- csv: happy


def test_csv_string_labels_become_sorted_classes(tmp_path: Path) -> None:
    dataset = _csv(tmp_path).load(0, "multiclass")
    assert dataset.class_names == ["x", "y", "z"]
    assert dataset.y_train.tolist() == [1, 0, 1, 2]
    assert dataset.y_train.dtype == np.int64
    assert dataset.feature_names == ["a", "b"]  # every other column, in file order
    assert dataset.x_train.dtype == np.float32
    assert dataset.x_train.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert dataset.x_test is None  # load_dataset holds out test_split
    assert dataset.notes == {
        "file": str(tmp_path / "train.csv"),
        "rows": 4,
        "target": "kind",
        "normalize": True,
        "loading": {"mode": "memory", "why": "33 bytes of CSV, at most 128.0 MB"},
    }


def test_csv_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    text = "kind,a\n10,0\n2,1\n3,2\n2,3\n10,4\n"
    test = _write(tmp_path, "test.csv", "a,kind\n0,3\n1,10.0\n")
    config = _csv(tmp_path, text, normalize=False, test_path=str(test))
    dataset = config.load(0, "multiclass")
    assert dataset.class_names == ["2", "3", "10"]  # not "10", "2", "3"
    assert dataset.y_train.tolist() == [2, 0, 1, 0, 2]
    assert dataset.y_test is not None
    assert dataset.y_test.tolist() == [1, 2]  # 10.0 is the class written 10
    assert dataset.notes["normalize"] is False


def test_csv_binary_and_delimiter(tmp_path: Path) -> None:
    config = _csv(tmp_path, "a;kind\n1;yes\n2;no\n3;yes\n", delimiter=";")
    dataset = config.load(0, "binary")
    assert dataset.class_names == ["no", "yes"]
    assert dataset.y_train.tolist() == [1, 0, 1]


def test_csv_features_subset_in_given_order(tmp_path: Path) -> None:
    text = "id,a,b,kind,c\n100,1,2,p,3\n101,4,5,q,6\n"
    dataset = _csv(tmp_path, text, features=["c", "a"]).load(0, "multiclass")
    assert dataset.feature_names == ["c", "a"]
    assert dataset.x_train.tolist() == [[3, 1], [6, 4]]


def test_csv_test_path_uses_the_training_classes(tmp_path: Path) -> None:
    test = _write(tmp_path, "test.csv", "kind,b,a\nz,20,10\nz,40,30\n")  # columns reordered
    dataset = _csv(tmp_path, test_path=str(test)).load(0, "multiclass")
    assert dataset.x_test is not None
    assert dataset.y_test is not None
    assert dataset.x_test.tolist() == [[10, 20], [30, 40]]
    assert dataset.y_test.tolist() == [2, 2]  # 'z' is class 2 of x, y, z
    assert dataset.notes["test_file"] == str(test)
    assert dataset.notes["test_rows"] == 2


def test_csv_regression_target(tmp_path: Path) -> None:
    text = "a,kind\n1,0.5\n2,-1.25\n3,1e3\n\n\n"  # trailing blank lines are dropped
    dataset = _csv(tmp_path, text).load(0, "regression")
    assert dataset.class_names is None
    assert dataset.y_train.dtype == np.float32
    assert dataset.y_train.tolist() == [0.5, -1.25, 1000.0]


def test_csv_without_test_file_holds_out_stratified(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 7},{'abc'[i % 3]}\n" for i in range(60))
    config = _csv(tmp_path, "a,b,kind\n" + rows, test_split=0.25, validation_split=0.2)
    dataset = load_dataset(config, 3, "multiclass")
    assert dataset.y_test is not None
    assert np.bincount(dataset.y_test).tolist() == [5, 5, 5]
    assert dataset.y_val is not None
    kept = np.concatenate([dataset.y_train, dataset.y_val])  # validation comes from these
    assert_stratified(dataset.y_val, kept)
    assert_stratified(dataset.y_test, np.concatenate([kept, dataset.y_test]))
    assert [len(x) for x, _ in dataset.splits().values()] == [36, 9, 15]


# -------------------------------------------------------------------- csv: errors

LONG = "a,b,kind\n" + "".join(f"{'x' if i % 2 else i},{i},k{i % 2}\n" for i in range(16))

CSV_ERRORS = [
    pytest.param({}, "multiclass", {"path": "gone.csv"}, [r"GONE: file not found"], id="missing-file"),
    pytest.param({"train.csv": b"a,kind\n1,caf\xe9\n"}, "multiclass", {}, [r"FILE: not UTF-8 text \(save it as UTF-8 CSV\)"], id="not-utf8"),
    pytest.param({"train.csv": ""}, "multiclass", {}, [r"FILE: no header line \(the file is empty; expected column names on line 1\)"], id="empty-file"),
    pytest.param({"train.csv": "\na,kind\n1,x\n"}, "multiclass", {}, [r"FILE: no header line \(line 1 is blank; .*"], id="blank-header"),
    pytest.param({"train.csv": "a,kind\n"}, "multiclass", {}, [r"FILE: no data rows \(only a header line; expected rows below it\)"], id="header-only"),
    pytest.param({"train.csv": "a,spieces\n1,x\n"}, "multiclass", {}, [r"FILE: data.target: no column 'kind' \(the columns are 'a', 'spieces'\)"], id="missing-target"),
    pytest.param({"train.csv": "a,kinds\n1,x\n"}, "multiclass", {}, [r"FILE: data.target: no column 'kind', did you mean 'kinds'\? \(the columns are 'a', 'kinds'\)"], id="missing-target-did-you-mean"),
    pytest.param({}, "multiclass", {"features": ["a", "bb", "zzz"]}, [r"FILE: data.features: no column 'bb', did you mean 'b'\? \(the columns are 'a', 'b', 'kind'\)", r"FILE: data.features: no column 'zzz' \(the columns are 'a', 'b', 'kind'\)"], id="missing-features"),
    pytest.param({"train.csv": "kind\nx\ny\n"}, "multiclass", {}, [r"FILE: no feature columns \(the only column is the target 'kind'; .*"], id="no-features"),
    pytest.param({"train.csv": "a,a,kind\n1,2,x\n"}, "multiclass", {}, [r"FILE: line 1: column name 'a' appears twice or more"], id="duplicate-column"),
    pytest.param({"train.csv": ",a,kind\n0,1,x\n"}, "multiclass", {}, [r"FILE: line 1: column 1 has no name \(expected a name for every column\)"], id="unnamed-column"),
    pytest.param({"train.csv": "a,kind\n1,x\n2,y,3\n"}, "multiclass", {}, [r"FILE: not a readable CSV file \(Expected 2 fields in line 3, saw 3\)"], id="ragged-row"),
    pytest.param({"train.csv": "a,kind\n1,x,3\n2,y\n"}, "multiclass", {}, [r"FILE: line 2: more fields than the header has columns \(check data.delimiter and quoting\)"], id="long-first-row"),
    pytest.param({"train.csv": "a,b,kind\n1,2,x\n3,4,y\n5,abc,x\n"}, "multiclass", {}, [r"FILE: line 4, column 'b': 'abc' is not a number"], id="non-numeric-cell"),
    pytest.param({"train.csv": LONG}, "multiclass", {}, [*(rf"FILE: line {n}, column 'a': 'x' is not a number" for n in (3, 5, 7, 9, 11)), r"FILE: and 3 more"], id="many-non-numeric-cells"),
    pytest.param({"train.csv": "a,b,kind\n1,,x\n3,4,\n"}, "multiclass", {}, [r"FILE: line 2, column 'b': empty cell", r"FILE: line 3, column 'kind': empty cell"], id="empty-cells"),
    pytest.param({"train.csv": "a,b,kind\n1,2,x\n,,\n3,4,y\n"}, "multiclass", {}, [r"FILE: line 3: an empty row"], id="blank-line"),
    pytest.param({"train.csv": "a,b,kind\n1,inf,x\n2,3,y\n"}, "multiclass", {}, [r"FILE: line 2, column 'b': not a finite number \(read as inf: the cell holds inf or a value beyond float64's range\)"], id="infinite-cell"),
    pytest.param({"train.csv": "a,b,kind\n1,1e400,x\n2,3,y\n"}, "multiclass", {}, [r"FILE: line 2, column 'b': not a finite number \(read as inf: the cell holds inf or a value beyond float64's range\)"], id="beyond-float64-cell"),
    pytest.param({"train.csv": "a,b,kind\n1,x1e400,x\n2,3,y\n"}, "multiclass", {}, [r"FILE: line 2, column 'b': 'x1e400' is not a number"], id="text-cell"),
    pytest.param({"train.csv": "a,b,kind\n1,1e39,x\n2,3,y\n"}, "multiclass", {}, [r"FILE: line 2, column 'b': the value is too large \(read as 1e\+39; float32 ends near 3.4e38\)"], id="too-large-cell"),
    pytest.param({"train.csv": "a,b,kind\n1,2,x\n2,nan,y\n"}, "multiclass", {}, [r"FILE: line 3, column 'b': 'nan' is not a number"], id="nan-text-cell"),
    pytest.param({"train.csv": "a,kind\n1,0.5\n2,high\n"}, "regression", {}, [r"FILE: line 3, column 'kind': 'high' is not a number"], id="regression-text-target"),
    pytest.param({}, "binary", {}, [r"FILE: column 'kind': binary_crossentropy needs exactly 2 classes, found 3: 'x', 'y', 'z' \(for more classes use loss: sparse_categorical_crossentropy .*\)"], id="binary-three-classes"),
    pytest.param({"train.csv": "a,kind\n1,x\n2,x\n"}, "multiclass", {}, [r"FILE: column 'kind': only one class \('x'\); classification needs at least 2 .*"], id="one-class"),
    pytest.param({"test.csv": "a,kind,c\n1,x,3\n"}, "multiclass", {"test_path": "test.csv"}, [r"TEST: data.test_path: the columns differ from the training file FILE \(missing 'b'; extra 'c'\); expected the same columns"], id="test-other-columns"),
    pytest.param({"test.csv": "a,b,kind\n1,2,x\n3,4,w\n5,6,v\n"}, "multiclass", {"test_path": "test.csv"}, [r"TEST: line 3, column 'kind': unknown class 'w' \(the training file has 'x', 'y', 'z'\)", r"TEST: line 4, column 'kind': unknown class 'v' .*"], id="test-unknown-class"),
    pytest.param({"test.csv": "a,b,kind\n1,?,x\n"}, "multiclass", {"test_path": "test.csv"}, [r"TEST: line 2, column 'b': '\?' is not a number"], id="test-bad-cell"),
    pytest.param({"train.csv": "a,b,kind\n1,?,x\n", "test.csv": "a,b,kind\n1,,x\n"}, "multiclass", {"test_path": "test.csv"}, [r"FILE: line 2, column 'b': '\?' is not a number", r"TEST: line 2, column 'b': empty cell"], id="both-files-bad"),
    pytest.param({}, "multiclass", {"path": "."}, [r"TMP: is a folder, not a CSV file"], id="folder"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "task", "settings", "expected"), CSV_ERRORS)
def test_csv_errors(
    tmp_path: Path,
    files: dict[str, str | bytes],
    task: str,
    settings: dict[str, Any],
    expected: list[str],
) -> None:
    for name, content in {"train.csv": TABLE, **files}.items():
        _write(tmp_path, name, content)
    paths = {k: str(tmp_path / v) for k, v in settings.items() if k in ("path", "test_path")}
    config = CsvData.model_validate(
        {
            "source": "csv",
            "path": str(tmp_path / "train.csv"),
            "target": "kind",
            **settings,
            **paths,
        }
    )
    names = {
        "FILE": tmp_path / "train.csv",
        "TEST": tmp_path / "test.csv",
        "GONE": tmp_path / "gone.csv",
        "TMP": tmp_path,
    }
    patterns = [
        re.sub(r"\b(FILE|TEST|GONE|TMP)\b", lambda m: re.escape(str(names[m[1]])), p)
        for p in expected
    ]
    _assert_lines(_problems(config, task), patterns)


def test_csv_refuses_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")  # chmod 0 means nothing to root

    monkeypatch.setattr(pd, "read_csv", refuse)
    config = _csv(tmp_path)
    _assert_lines(
        _problems(config),
        [
            rf"{re.escape(config.path)}: cannot be read \(PermissionError: \[Errno 13\] Permission denied\)"
        ],
    )


# -------------------------------------------------------------------- numpy: happy


def test_npz_with_test_arrays_keeps_image_shape(tmp_path: Path) -> None:
    images = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4, 1)
    config = _npz(
        tmp_path,
        x_train=images,
        y_train=np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8),
        x_test=images[:2],
        y_test=np.array([[2], [1]]),
    )
    dataset = config.load(0, "multiclass")
    assert dataset.x_train.shape == (6, 4, 4, 1)
    assert dataset.x_train.dtype == np.float32
    assert dataset.y_train.dtype == np.int64
    assert dataset.class_names == ["0", "1", "2"]
    assert dataset.y_test is not None
    assert dataset.y_test.tolist() == [2, 1]
    assert dataset.notes == {
        "file": config.path,
        "loading": {"mode": "memory", "why": "an .npz is read whole"},
        "rows": 6,
        "test_rows": 2,
    }


def test_npz_without_test_arrays_uses_class_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x_train=np.ones((4, 3)), y_train=np.array([0.0, 1.0, 1.0, 0.0]))
    config = NumpyData.model_validate(
        {"source": "numpy", "path": str(tmp_path / "d.npz"), "class_names": ["cat", "dog"]}
    )
    dataset = config.load(0, "binary")
    assert dataset.x_test is None
    assert dataset.class_names == ["cat", "dog"]
    assert dataset.y_train.tolist() == [0, 1, 1, 0]


def test_npy_pair_and_regression(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(8, dtype=np.float64).reshape(4, 2))
    np.save(tmp_path / "y.npy", np.array([0.5, 1.5, 2.5, 3.5]))
    config = NumpyData.model_validate(
        {"source": "numpy", "path": str(tmp_path / "x.npy"), "labels_path": str(tmp_path / "y.npy")}
    )
    dataset = config.load(0, "regression")
    assert dataset.x_train.dtype == np.float32
    assert dataset.x_train.shape == (4, 2)
    assert dataset.y_train.dtype == np.float32
    assert dataset.y_train.tolist() == [0.5, 1.5, 2.5, 3.5]
    assert dataset.notes["labels_file"] == str(tmp_path / "y.npy")


# ------------------------------------------------------------------- numpy: errors

X4 = np.zeros((4, 2))
Y4 = np.array([0, 1, 0, 1])


def _objects() -> np.ndarray:
    return np.array([{"a": 1}, None, 3, 4], dtype=object)


NPZ_ERRORS = [
    pytest.param({"x_train": X4, "labels": Y4}, "multiclass", None, [r"FILE: no array 'y_train' \(found 'x_train', 'labels'\)"], id="npz-missing-key"),
    pytest.param({"x_train": X4, "y_train": Y4, "x_test": X4}, "multiclass", None, [r"FILE: 'x_test' without 'y_test' \(found 'x_train', 'y_train', 'x_test'; expected both or neither\)"], id="npz-test-half"),
    pytest.param({"x_train": _objects(), "y_train": Y4}, "multiclass", None, [r"FILE: array 'x_train' holds Python objects \(pickled data\), which dltool never loads .*"], id="npz-object-array"),
    pytest.param({"x_train": np.zeros((5, 2)), "y_train": Y4}, "multiclass", None, [r"FILE: x_train: 5 examples but FILE: y_train has 4 labels \(expected the same number\)"], id="npz-length-mismatch"),
    pytest.param({"x_train": X4, "y_train": Y4, "x_test": X4, "y_test": Y4[:3]}, "multiclass", None, [r"FILE: x_test: 4 examples but FILE: y_test has 3 labels .*"], id="npz-test-length-mismatch"),
    pytest.param({"x_train": X4, "y_train": Y4, "x_test": np.zeros((2, 3)), "y_test": Y4[:2]}, "multiclass", None, [r"FILE: x_test: examples have shape \[3\] but x_train's have \[2\] \(expected the same\)"], id="npz-test-shape"),
    pytest.param({"x_train": np.zeros((0, 2)), "y_train": Y4[:0]}, "multiclass", None, [r"FILE: x_train: no examples \(shape \[0, 2\]\)", r"FILE: y_train: no examples \(shape \[0\]\)"], id="npz-empty"),
    pytest.param({"x_train": np.array([["a", "b"]] * 4), "y_train": Y4}, "multiclass", None, [r"FILE: x_train: holds <U1 values, not numbers"], id="npz-text-features"),
    pytest.param({"x_train": np.array([[1.0, np.nan]] * 4), "y_train": Y4}, "multiclass", None, [r"FILE: x_train: 4 values are NaN or infinite \(or beyond float32\), in 4 examples, the first at index 0"], id="npz-nan-features"),
    pytest.param({"x_train": np.full((4, 2), 1e300), "y_train": Y4}, "multiclass", None, [r"FILE: x_train: 8 values are NaN or infinite \(or beyond float32\), in 4 examples, the first at index 0"], id="npz-beyond-float32"),
    pytest.param({"x_train": X4, "y_train": np.array([0, 0.5, 1, 2.5])}, "multiclass", None, [r"FILE: y_train: labels must be class indices 0, 1, 2, ... \(received 0.5, 2.5 at index 1 and 1 more\)"], id="npz-fractional-labels"),
    pytest.param({"x_train": X4, "y_train": np.array([0, -1, 1, 0])}, "multiclass", None, [r"FILE: y_train: labels must be class indices 0, 1, 2, ... \(received -1 at index 1\)"], id="npz-negative-labels"),
    pytest.param({"x_train": X4, "y_train": np.eye(4)}, "multiclass", None, [r"FILE: y_train: labels have shape \[4, 4\] \(expected one class index per example: shape \[4\]\)"], id="npz-one-hot-labels"),
    pytest.param({"x_train": X4, "y_train": np.array([0, 1, 2, 0])}, "binary", None, [r"FILE: y_train: binary_crossentropy needs 2 classes, labels 0 and 1 \(received labels up to 2; .*\)"], id="npz-binary-three"),
    pytest.param({"x_train": X4, "y_train": np.array([0, 1, 2, 0])}, "multiclass", ["a", "b"], [r"FILE: y_train: label 2 has no name in data.class_names \(2 names cover labels 0..1; expected 3 names\)"], id="npz-class-names-short"),
    pytest.param({"x_train": X4, "y_train": Y4}, "binary", ["a", "b", "c"], [r"FILE: y_train: binary_crossentropy needs 2 classes, labels 0 and 1 \(received 3 class_names; .*\)"], id="npz-binary-three-names"),
    pytest.param({"x_train": X4, "y_train": np.array([0.5, np.inf, 1, 2])}, "regression", None, [r"FILE: y_train: 1 values are NaN or infinite .*"], id="npz-infinite-target"),
]  # fmt: skip


@pytest.mark.parametrize(("arrays", "task", "class_names", "expected"), NPZ_ERRORS)
def test_npz_errors(
    tmp_path: Path,
    arrays: dict[str, np.ndarray],
    task: str,
    class_names: list[str] | None,
    expected: list[str],
) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    config = NumpyData.model_validate(
        {"source": "numpy", "path": str(path), "class_names": class_names}
    )
    _assert_lines(
        _problems(config, task), [p.replace("FILE", re.escape(str(path))) for p in expected]
    )


def _pair(folder: Path, x: Any, y: Any) -> NumpyData:
    for name, content in (("x.npy", x), ("y.npy", y)):
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        elif content is not None:
            np.save(folder / name, content, allow_pickle=True)
    return NumpyData.model_validate(
        {"source": "numpy", "path": str(folder / "x.npy"), "labels_path": str(folder / "y.npy")}
    )


NPY_ERRORS = [
    pytest.param(None, Y4, [r"X: file not found"], id="npy-missing"),
    pytest.param(b"1,2\n3,4\n", Y4, [r"X: not a NumPy .npy file \(it does not start like one\)"], id="npy-text-file"),
    pytest.param(_objects(), Y4, [r"X: holds Python objects \(pickled data\), which dltool never loads \(save plain numbers, .*\)"], id="npy-object-array"),
    pytest.param(X4, np.array([0, 1]), [r"X: 4 examples but Y has 2 labels \(expected the same number\)"], id="npy-length-mismatch"),
    pytest.param(b"\x93NUMPY\x01\x00garbage", Y4, [r"X: not a readable .npy file \(.*\)"], id="npy-truncated"),
]  # fmt: skip


@pytest.mark.parametrize(("x", "y", "expected"), NPY_ERRORS)
def test_npy_errors(tmp_path: Path, x: Any, y: Any, expected: list[str]) -> None:
    config = _pair(tmp_path, x, y)
    names = {"X": re.escape(str(tmp_path / "x.npy")), "Y": re.escape(str(tmp_path / "y.npy"))}
    patterns = [re.sub(r"\b([XY])\b", lambda m: names[m[1]], p) for p in expected]
    _assert_lines(_problems(config), patterns)


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X4)
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    config = NumpyData.model_validate({"source": "numpy", "path": str(tmp_path / "x.npz")})
    _assert_lines(
        _problems(config),
        [rf"{re.escape(str(tmp_path / 'x.npz'))}: not a NumPy .npz archive \(.*\)"],
    )


# ---------------------------------------------------------------------------- CLI


def _table_config(path: Path, **data: Any) -> dict[str, Any]:
    config = tiny_config(
        model={
            "input_shape": [2],
            "layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
        },
        training={"loss": "sparse_categorical_crossentropy", "epochs": 1, "batch_size": 32},
    )
    config["data"] = {"source": "csv", "path": str(path), "target": "kind", "test_split": 0.25, **data}  # fmt: skip
    return config


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param("a,b,kinds\n1,2,x\n", [r"error: FILE: data.target: no column 'kind', did you mean 'kinds'\? .*"], id="missing-target"),
        pytest.param(LONG, [*(rf"error: FILE: line {n}, column 'a': 'x' is not a number" for n in (3, 5, 7, 9, 11)), r"error: FILE: and 3 more"], id="bad-cells"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_csv(
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    text: str,
    lines: list[str],
) -> None:
    data = _write(tmp_path, "table.csv", text)
    runs = tmp_path / "runs"
    result = run_cli("train", write_config(_table_config(data)), "--runs-dir", runs)
    assert result.exit_code == 2, result.stdout
    patterns = [p.replace("FILE", re.escape(str(data))) for p in lines]
    _assert_lines(result.stderr.splitlines(), patterns)
    assert not runs.exists()


def test_cli_refuses_pickled_npz(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    np.savez(tmp_path / "d.npz", x_train=_objects(), y_train=Y4)
    config = _table_config(tmp_path / "d.npz")
    config["data"] = {"source": "numpy", "path": str(tmp_path / "d.npz")}
    runs = tmp_path / "runs"
    result = run_cli("train", write_config(config), "--runs-dir", runs)
    assert result.exit_code == 2, result.stdout
    _assert_lines(result.stderr.splitlines(), [r"error: .*d\.npz: array 'x_train' holds Python objects .*"])  # fmt: skip
    assert not runs.exists()


@pytest.mark.slow
def test_cli_trains_on_a_csv_with_class_names(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    kinds = ["setosa", "versicolor", "virginica"]
    with open(tmp_path / "table.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "kind"])
        for i in range(300):
            writer.writerow(
                [round(rng.normal(i % 3 * 10, 1), 3), rng.integers(0, 100), kinds[i % 3]]
            )
    runs = tmp_path / "runs"
    config = _table_config(tmp_path / "table.csv", validation_split=0.2)
    config["training"]["epochs"] = 2
    result = run_cli("train", write_config(config), "--runs-dir", runs)
    assert result.exit_code == 0, result.stderr
    (run,) = runs.iterdir()
    with open(run / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 75
    assert list(rows[0])[-3:] == [f"prob_{k}" for k in kinds]
    assert {row["true"] for row in rows} == set(kinds)
    assert {row["predicted"] for row in rows} <= set(kinds)
    summary = (run / "summary.txt").read_text()
    assert "Normalization" in summary  # data.normalize: the model standardizes raw columns
