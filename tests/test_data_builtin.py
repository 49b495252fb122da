"""Builtin datasets: scikit-learn's bundled copies, and Keras' downloads from a local cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, assert_stratified, fake_mnist_cache
from dltool.data import load_dataset
from dltool.data.builtin import SHAPES, BuiltinData
from dltool.errors import DataError, ExitCode


@pytest.mark.parametrize("name", ["digits", "iris", "breast_cancer", "wine"])
def test_bundled_datasets(name: str) -> None:
    dataset = load_dataset(
        BuiltinData(source="builtin", name=name, validation_split=0.1), 0, "multiclass"
    )
    shape, classes = SHAPES[name]
    assert list(dataset.x_train.shape[1:]) == shape
    assert dataset.class_names is not None
    assert len(dataset.class_names) == classes
    assert dataset.x_test is not None
    assert dataset.x_val is not None
    total = len(dataset.x_train) + len(dataset.x_val) + len(dataset.x_test)
    assert len(dataset.x_test) == round(total * 0.2)
    assert dataset.y_test is not None
    assert dataset.y_val is not None
    kept = np.concatenate([dataset.y_train, dataset.y_val])  # validation comes from these
    assert_stratified(dataset.y_val, kept)
    assert_stratified(dataset.y_test, np.concatenate([kept, dataset.y_test]))


@pytest.mark.slow
def test_mnist_cnn_from_keras_cache(
    run_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    fake_mnist_cache(tmp_path / "keras")
    config = yaml.safe_load((CONFIGS / "mnist_cnn.yaml").read_text())
    config["training"]["epochs"] = 1
    path = tmp_path / "mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["params"] == 34_826  # the classic Keras MNIST convnet
    header = (run / "predictions.csv").read_text().splitlines()[0]
    assert header == "index,true,predicted,correct," + ",".join(f"prob_{d}" for d in range(10))


@pytest.mark.parametrize(
    ("name", "url", "cached"),
    [
        ("mnist", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz", "mnist.npz"),
        # Keras 3 keeps the downloaded tar.gz as <fname>_archive and extracts it beside.
        ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive"),
    ],
)  # fmt: skip
def test_keras_dataset_offline_without_cache(
    name: str,
    url: str,
    cached: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    # Every download goes to a closed local port: offline, whatever the machine's network.
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(DataError) as caught:
        load_dataset(BuiltinData(source="builtin", name=name), 0, "multiclass")
    assert caught.value.exit_code == ExitCode.REFUSED
    (line,) = caught.value.lines
    assert line.startswith(
        f"data.name: {name!r} is not in Keras' cache and could not be downloaded ("
    )
    expected = tmp_path / "empty" / "datasets" / cached
    assert f"download {url} to {expected} (set KERAS_HOME" in line
    # Keras' own "Downloading data from ..." print is not let through: ours says it once.
    assert "Downloading data from" not in capsys.readouterr().out


def test_fashion_mnist_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    for prefix, count in (("train", 20), ("t10k", 10)):
        labels = bytes(8) + bytes(i % 10 for i in range(count))
        images = bytes(16) + bytes(count * 28 * 28)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    dataset = load_dataset(BuiltinData(source="builtin", name="fashion_mnist"), 0, "multiclass")
    assert dataset.x_train.shape == (20, 28, 28, 1)
    assert dataset.x_test is not None
    assert dataset.x_test.shape == (10, 28, 28, 1)
    assert dataset.class_names is not None
    assert dataset.class_names[9] == "ankle-boot"


def test_binary_loss_on_three_classes() -> None:
    with pytest.raises(
        DataError, match=r"data.name: 'iris' has 3 classes; binary_crossentropy needs 2"
    ):
        load_dataset(BuiltinData(source="builtin", name="iris"), 0, "binary")


def _offline(monkeypatch: pytest.MonkeyPatch, keras_home: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # a closed local port
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


def test_smoke_skips_configs_whose_data_is_not_downloaded(
    run_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path / "empty")
    result = run_cli("smoke", CONFIGS / "mnist_cnn.yaml", "--runs-dir", tmp_path / "runs")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"skipped {CONFIGS / 'mnist_cnn.yaml'}: data.name 'mnist' is not in "
        f"{tmp_path / 'empty' / 'datasets'} and would be downloaded from "
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz (add --download "
        "to download it, or place the file there)\n"
    )
    assert not (tmp_path / "runs").exists()


def test_smoke_download_offline_fails_naming_the_config(
    run_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path / "empty")
    result = run_cli("smoke", CONFIGS / "mnist_cnn.yaml", "--download")
    assert result.exit_code == 2
    notice, line = result.stderr.splitlines()
    assert notice.startswith("mnist: not in ")
    assert line.startswith(
        f"error: {CONFIGS / 'mnist_cnn.yaml'}: data.name: 'mnist' is not in Keras' cache and "
        "could not be downloaded ("
    )
