"""Read new inputs for a trained run: CSV rows, NumPy arrays or images, in batches.

Everything here checks the input against what the run was trained on (feature
columns, example shape, image size and colour mode) and refuses bad input with
one line per problem before anything is written. Large inputs are read in
chunks, so memory stays flat however many rows there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltool.errors import InputError
from dltool.messages import did_you_mean

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CSV_CHUNK_ROWS = 50_000  # rows read and predicted at a time: flat memory for any file size
# Examples of an .npy/.npz predicted at a time, in float32 bytes: 349,525 rows of 3 features,
# 1,337 28x28 images. Each model.predict call costs ~8 ms, so 50,000-row chunks left
# 1M rows 19% slower than one model.predict call; chunks this size, ~5%.
ARRAY_CHUNK_BYTES = 4 * 2**20


@dataclass
class Chunk:
    """Examples ready for the model, with what identifies them in the output."""

    x: np.ndarray
    ids: dict[str, Any]  # output columns that identify each row (row, id, file, ...), len(x) each
    labels: list[Any] | None = None  # raw labels, when the input has them (evaluate)


@dataclass
class InputSpec:
    """What the run's model expects, from its run.json and config.yaml."""

    input_shape: list[int]
    feature_names: list[str] | None
    image_size: tuple[int, int] | None = None
    color_mode: str = "rgb"
    target: str | None = None  # label column of labelled CSV files
    image_file_scale: int = 1  # image-file pixels / training pixels (see image_file_scale)
    notes: list[str] = field(default_factory=list)  # things worth telling the user


def image_file_scale(dataset: Any, source: str) -> int:
    """Whole factor between a dataset's pixels and the 8-bit image files that stand for them.

    Image files hold 0..255. Images from arrays whose pixels peak well below that
    (scikit-learn's digits: 0..16) would look black, so ``dltool data`` writes them
    multiplied by the largest whole factor that stays within 255 (digits: 15, so
    16 -> 240), and ``dltool predict`` / ``evaluate`` divide image-file pixels by
    the run's factor (recorded in run.json), so the model sees its training range.
    A whole factor makes the round trip exact for whole-number pixels. Images read
    from files (``image_folder``) already are file pixels: factor 1.

    Args:
        dataset: a :class:`dltool.data.Dataset`.
        source: its ``data.source``.
    """
    if dataset.x_train.ndim < 3 or source == "image_folder":  # tables, or pixels from files
        return 1
    peak = max(float(np.max(x)) for x, _ in dataset.splits().values())
    return int(max(1, 255 // peak)) if peak > 0 else 1


def read_image(path: Path, image_size: tuple[int, int], color_mode: str) -> tuple[np.ndarray, bool]:
    """Pixels as float32 (height, width, channels) in 0..255, and whether it was resized.

    Raises:
        OSError / ValueError: Pillow cannot read the file (callers report the path).
    """
    from PIL import Image

    with Image.open(path) as image:
        converted = image.convert("L" if color_mode == "grayscale" else "RGB")
        height, width = image_size
        resized = converted.size != (width, height)
        if resized:
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype="float32")
    return (pixels[..., None] if pixels.ndim == 2 else pixels), resized


def _numeric(frame: Any, columns: list[str], path: Path, first_line: int) -> np.ndarray:
    """``frame[columns]`` as float32; a non-numeric or empty cell is an error naming its line."""
    import pandas as pd

    problems: list[str] = []
    values = np.empty((len(frame), len(columns)), dtype="float32")
    for position, column in enumerate(columns):
        cells = frame[column]
        if pd.api.types.is_numeric_dtype(cells) and not cells.isna().any():
            values[:, position] = cells.to_numpy(dtype="float32")  # the common, fast case
            continue
        converted = pd.to_numeric(cells, errors="coerce")
        bad = np.flatnonzero(converted.isna().to_numpy())
        for row in bad[:5]:
            cell = frame[column].iloc[row]
            shown = "an empty cell" if pd.isna(cell) else f"{str(cell)!r} is not a number"
            problems.append(f"{path}: line {first_line + row}, column {column!r}: {shown}")
        if len(bad) > 5:
            problems.append(f"{path}: column {column!r}: and {len(bad) - 5} more cells like these")
        values[:, position] = converted.to_numpy(dtype="float64", na_value=np.nan)
    if problems:
        raise InputError(*problems)
    return values


def csv_chunks(path: Path, spec: InputSpec, labelled: bool) -> Iterator[Chunk]:
    """Rows of a CSV file in chunks; feature columns by name, in any order; others kept."""
    import pandas as pd

    if spec.feature_names is None:
        raise InputError(f"{path}: this run was not trained on a table, so it cannot read CSV rows")
    try:
        header = pd.read_csv(path, nrows=0).columns
        # Features are parsed by pandas' C parser (fast); any other column stays text,
        # so ids such as 007 come back as written.
        text_columns = {c: str for c in header if c not in spec.feature_names}
        reader = pd.read_csv(
            path,
            chunksize=CSV_CHUNK_ROWS,
            dtype=text_columns,
            keep_default_na=False,
            na_values=[""],
        )
    except FileNotFoundError as error:
        raise InputError(f"{path}: file not found") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text") from error
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise InputError(
            f"{path}: not a readable CSV file ({' '.join(str(error).split())})"
        ) from error
    with reader:  # closes the file even when a chunk is refused
        first_line = 2  # line 1 is the header
        try:
            for frame in reader:
                yield _csv_chunk(frame, path, spec, labelled, first_line)
                first_line += len(frame)
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: not UTF-8 text") from error
        except pd.errors.ParserError as error:
            raise InputError(
                f"{path}: not a readable CSV file ({' '.join(str(error).split())})"
            ) from error


def _csv_chunk(frame: Any, path: Path, spec: InputSpec, labelled: bool, first_line: int) -> Chunk:
    features = spec.feature_names or []
    columns = [str(c) for c in frame.columns]
    missing = [name for name in features if name not in columns]
    if missing:
        # Only columns the run does not already use can be the misspelled one.
        unused = [c for c in columns if c not in features and not (labelled and c == spec.target)]
        hints = "".join(did_you_mean(name, unused) for name in missing[:1])
        raise InputError(
            f"{path}: missing feature column(s) {', '.join(map(repr, missing))}{hints} "
            f"(the run was trained on {', '.join(features)}; found {', '.join(columns)})"
        )
    target = spec.target
    if labelled and (target is None or target not in columns):
        raise InputError(f"{path}: no label column {target!r} (found {', '.join(columns)}; name the label column with --target COLUMN)")  # fmt: skip
    x = _numeric(frame, features, path, first_line)
    ids: dict[str, Any] = {"row": np.arange(first_line - 2, first_line - 2 + len(frame))}
    kept = [c for c in columns if c not in features and not (labelled and c == target)]
    # ids, and labels when predicting; arrays, not Series, which would align on the chunk's index
    ids.update({c: frame[c].fillna("").to_numpy() for c in kept})
    labels = frame[target].tolist() if labelled and target else None
    return Chunk(x=x, ids=ids, labels=labels)


def array_chunks(path: Path, spec: InputSpec, labelled: bool) -> Iterator[Chunk]:
    """Examples from an .npy file (or the ``x`` array of an .npz), in chunks."""
    x, y = _load_arrays(path, labelled)
    shape = list(spec.input_shape)
    if list(x.shape) == shape:  # one example without the batch axis
        x = x[None, ...]
    if list(x.shape[1:]) != shape:
        raise InputError(
            f"{path}: examples have shape {list(x.shape[1:])}; the model takes {shape} "
            f"(an array of shape [n, {', '.join(map(str, shape))}])"
        )
    if y is not None and len(y) != len(x):
        raise InputError(
            f"{path}: {len(x)} examples but {len(y)} labels (expected the same number)"
        )
    rows = max(1, ARRAY_CHUNK_BYTES // (4 * max(1, int(np.prod(shape)))))  # examples per chunk
    for start in range(0, len(x), rows):
        stop = min(start + rows, len(x))
        labels = (
            np.asarray(y[start:stop]).reshape(stop - start, -1)[:, 0].tolist()
            if y is not None
            else None
        )
        yield Chunk(
            x=np.asarray(x[start:stop], dtype="float32"),
            ids={"index": np.arange(start, stop)},
            labels=labels,
        )


def _load_arrays(path: Path, labelled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except FileNotFoundError as error:
        raise InputError(f"{path}: file not found") from error
    # numpy calls any unknown file "pickled data"; tell the two apart by their first bytes.
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise InputError(f"{path}: not a NumPy .npy/.npz file (it does not start like one)")
    try:
        loaded = np.load(path, mmap_mode="r" if path.suffix == ".npy" else None, allow_pickle=False)
    except FileNotFoundError as error:
        raise InputError(f"{path}: file not found") from error
    except ValueError as error:  # object arrays need pickle, which is never allowed
        raise InputError(
            f"{path}: holds Python objects (pickled data), which dltool never loads"
        ) from error
    except OSError as error:
        raise InputError(f"{path}: not a NumPy .npy/.npz file") from error
    if isinstance(loaded, np.ndarray):
        if labelled:
            raise InputError(
                f"{path}: an .npy file holds no labels; use an .npz with arrays x and y"
            )
        return loaded, None
    with loaded as archive:
        keys = list(archive.keys())
        x_key = next((k for k in ("x", "x_test") if k in keys), None)
        if x_key is None:
            raise InputError(
                f"{path}: no array named 'x' or 'x_test' (found {', '.join(keys) or 'none'})"
            )
        y_key = {"x": "y", "x_test": "y_test"}[x_key]
        if labelled and y_key not in keys:
            raise InputError(
                f"{path}: no labels array {y_key!r} beside {x_key!r} (found {', '.join(keys)})"
            )
        try:
            return archive[x_key], (archive[y_key] if labelled else None)
        except ValueError as error:
            raise InputError(
                f"{path}: holds Python objects (pickled data), which dltool never loads"
            ) from error


def image_files(path: Path) -> list[Path]:
    """One image file, or every image under a folder (recursively, sorted, hidden files skipped)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder")
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )  # fmt: skip
    if not files:
        raise InputError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def image_chunks(
    files: list[Path], spec: InputSpec, batch: int, labels: list[Any] | None = None
) -> Iterator[Chunk]:
    """Images resized to the run's image_size and colour mode, in the training pixel range, in chunks.

    Every file is opened once before the first chunk, so an unreadable file is
    refused before anything is written.
    """
    if spec.image_size is None:
        raise ValueError("image_chunks needs a run trained on images (spec.image_size)")
    from PIL import Image

    bad = []
    for file in files:
        try:
            with Image.open(file) as opened:
                opened.verify()
        except Exception as error:
            bad.append(f"{file}: not a readable image ({type(error).__name__})")
    if bad:
        raise InputError(
            *bad[:10], *([f"and {len(bad) - 10} more unreadable files"] if len(bad) > 10 else [])
        )
    resized = 0
    for start in range(0, len(files), batch):
        part = files[start : start + batch]
        pixels = []
        for file in part:
            one, changed = read_image(file, spec.image_size, spec.color_mode)
            pixels.append(one)
            resized += changed
        chunk_labels = labels[start : start + batch] if labels is not None else None
        x = np.stack(pixels)
        if spec.image_file_scale != 1:
            x /= spec.image_file_scale  # back to the training range, e.g. digits' 0..16
        yield Chunk(x=x, ids={"file": [str(f) for f in part]}, labels=chunk_labels)
    if resized:
        height, width = spec.image_size
        spec.notes.append(
            f"{resized} image(s) were resized to {height}x{width} (bilinear), as in training"
        )
