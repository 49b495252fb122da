"""Known datasets: scikit-learn's bundled copies (no download) and Keras' downloads.

``digits``, ``iris``, ``breast_cancer`` and ``wine`` ship inside scikit-learn.
``mnist``, ``fashion_mnist`` and ``cifar10`` come from Keras' downloader: read
from Keras' cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``) when
present, downloaded otherwise. Offline without a cache, the error says which
file to place where.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dltool.data import Dataset
from dltool.data.source import SplitSource
from dltool.errors import DataError

if TYPE_CHECKING:
    import numpy as np

SHAPES: dict[str, tuple[list[int], int]] = {  # name -> (example shape, classes)
    "digits": ([8, 8, 1], 10),
    "iris": ([4], 3),
    "breast_cancer": ([30], 2),
    "wine": ([13], 3),
    "mnist": ([28, 28, 1], 10),
    "fashion_mnist": ([28, 28, 1], 10),
    "cifar10": ([32, 32, 3], 10),
}
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}  # fmt: skip
# What to download, and where Keras keeps it, for the offline message.
KERAS_CACHE_FILES = {
    "mnist": (f"{KERAS_ORIGIN}mnist.npz", "mnist.npz"),
    "fashion_mnist": (
        f"{KERAS_ORIGIN}<file> for each of {', '.join(FASHION_FILES)}",
        "fashion-mnist/",
    ),
    # Keras keeps the tar.gz itself, renamed, and checks its SHA-256 before extracting it.
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-batches-py-target_archive",
    ),
}


def keras_cache() -> Path:
    """Keras' dataset cache folder (``$KERAS_HOME/datasets``)."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets"


def download_needed(name: str) -> str | None:
    """Where ``name`` would be downloaded from, when it is a Keras download that is not
    in the cache yet; ``None`` when it can be read without the network."""
    if name not in KERAS_CACHE_FILES:
        return None
    url, cached = KERAS_CACHE_FILES[name]
    cache = keras_cache()
    if name == "fashion_mnist":
        present = all((cache / cached / file).is_file() for file in FASHION_FILES)
    else:
        present = (cache / cached).exists()
    return None if present else url


def _sklearn(name: str) -> Dataset:
    import numpy as np
    from sklearn import datasets

    bunch: Any = getattr(datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype="float32")
    if name == "digits":
        x = x.reshape(-1, 8, 8, 1)  # 8x8 grey images, pixel values 0..16
        features = None
    else:
        features = [str(f) for f in bunch.feature_names]
    return Dataset(
        x_train=x,
        y_train=np.asarray(bunch.target, dtype="int64"),
        feature_names=features,
        class_names=[str(c) for c in bunch.target_names],
        notes={"origin": f"scikit-learn load_{name} (bundled, no download)"},
    )


def _idx(path: Path, offset: int) -> np.ndarray:
    import numpy as np

    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=offset)


def _from_cache(name: str) -> tuple[np.ndarray, ...] | None:
    """(x_train, y_train, x_test, y_test) from Keras' cache, or None when not cached."""
    import numpy as np

    cache = keras_cache()
    if name == "mnist" and (cache / "mnist.npz").is_file():
        with np.load(cache / "mnist.npz", allow_pickle=False) as archive:
            return tuple(archive[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    folder = cache / "fashion-mnist"
    if name == "fashion_mnist" and all((folder / f).is_file() for f in FASHION_FILES):
        y_train, y_test = _idx(folder / FASHION_FILES[0], 8), _idx(folder / FASHION_FILES[2], 8)
        x_train = _idx(folder / FASHION_FILES[1], 16).reshape(len(y_train), 28, 28)
        x_test = _idx(folder / FASHION_FILES[3], 16).reshape(len(y_test), 28, 28)
        return x_train, y_train, x_test, y_test
    return None


def _download(name: str) -> tuple[np.ndarray, ...]:
    """Keras' own loader: reads its cache or downloads (cifar10 is always read this way)."""
    from dltool.backend import import_keras

    keras = import_keras()
    loader = getattr(keras.datasets, name)
    url, cached = KERAS_CACHE_FILES[name]
    print(f"{name}: not in {keras_cache()} yet: downloading {url} ...", file=sys.stderr)
    try:
        # Keras prints its own "Downloading data from ..." line and progress bar; our line
        # above says the same once, and a failure is one line of ours below.
        with contextlib.redirect_stdout(io.StringIO()):
            (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:
        reason = " ".join(str(error).split())[:200]
        raise DataError(
            f"data.name: {name!r} is not in Keras' cache and could not be downloaded "
            f"({reason}); download {url} to {keras_cache() / cached} (set KERAS_HOME "
            f"to use another cache folder), or use an offline dataset such as 'digits'"
        ) from error
    return x_train, y_train, x_test, y_test


def _keras(name: str) -> Dataset:
    import numpy as np

    arrays = _from_cache(name) or _download(name)
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim == 3:  # grey images: add the channel axis Conv2D expects
        x_train, x_test = x_train[..., None], x_test[..., None]
    return Dataset(
        x_train=x_train.astype("float32"),
        y_train=np.asarray(y_train, dtype="int64").reshape(-1),
        x_test=x_test.astype("float32"),
        y_test=np.asarray(y_test, dtype="int64").reshape(-1),
        class_names=list(CLASS_NAMES[name]),
        notes={"origin": f"keras.datasets.{name} (cache: {keras_cache()})"},
    )


class BuiltinData(SplitSource):
    """A known dataset: scikit-learn's bundled copies, or Keras' downloads (cached)."""

    source: Literal["builtin"]
    name: Literal["digits", "iris", "breast_cancer", "wine", "mnist", "fashion_mnist", "cifar10"]

    def input_shape(self) -> list[int] | None:
        return SHAPES[self.name][0]

    def class_count(self) -> int | None:
        return SHAPES[self.name][1]

    def source_paths(self) -> list[str]:
        """Keras' cached download (scikit-learn's bundled copies come with its version)."""
        if self.name not in KERAS_CACHE_FILES:
            return []
        cached = keras_cache() / KERAS_CACHE_FILES[self.name][1]
        if self.name == "fashion_mnist":
            return [str(cached / file) for file in FASHION_FILES]
        return [str(cached)]

    def load(self, seed: int, task: str) -> Dataset:
        if self.name in CLASS_NAMES:
            return _keras(self.name)
        dataset = _sklearn(self.name)
        if task == "binary" and len(dataset.class_names or []) != 2:
            raise DataError(
                f"data.name: {self.name!r} has {len(dataset.class_names or [])} classes; "
                f"binary_crossentropy needs 2 (expected loss: sparse_categorical_crossentropy)"
            )
        return dataset
