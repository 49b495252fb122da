"""dltool: train Keras models from YAML experiment files.

Importing this package is cheap: TensorFlow and Keras are imported only by the
commands that train or predict (see :mod:`dltool.backend`).
"""

from __future__ import annotations

# The one place the version is written: pyproject.toml reads it from here. Not
# importlib.metadata, which costs about 80 ms at every start-up.
__version__ = "0.1.0"

__all__ = ["__version__", "train"]


def __getattr__(name: str) -> object:
    # dltool.train is imported on first use: importing dltool stays cheap (no TensorFlow).
    if name == "train":
        from dltool.api import train

        return train
    raise AttributeError(f"module 'dltool' has no attribute {name!r}")
