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

from dltool import files
from dltool.errors import InputError
from dltool.files import IMAGE_SUFFIXES, read_image
from dltool.messages import did_you_mean

# CSV rows read and predicted at a time: flat memory for any file size. Each model call costs
# a fixed 10-20 ms, so on 1M rows (2 cores) 200,000-row chunks were 6% faster than 50,000.
CSV_CHUNK_ROWS = 200_000
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
    from dltool.data.rows import chunks_of

    peak = max(float(np.max(c)) for x, _ in dataset.splits().values() for c in chunks_of(x) if c.size)  # fmt: skip
    return int(max(1, 255 // peak)) if peak > 0 else 1


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

    if spec.feature_names is None:
        raise InputError(f"{path}: this run was not trained on a table, so it cannot read CSV rows")
    header = files.read_csv(path, InputError, nrows=0).columns
    # Features are parsed by pandas' C parser (fast); any other column stays text,
    # so ids such as 007 come back as written.
    text_columns = {c: str for c in header if c not in spec.feature_names}
    first_line = 2  # line 1 is the header
    for frame in files.csv_chunks(path, InputError, CSV_CHUNK_ROWS, dtype=text_columns):
        yield _csv_chunk(frame, path, spec, labelled, first_line)
        first_line += len(frame)


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
    """(x, y or None) of an .npy (memory-mapped: read chunk by chunk) or an .npz."""
    start = files.magic(path, InputError)
    if start == files.NPY_MAGIC:
        if labelled:
            raise InputError(
                f"{path}: an .npy file holds no labels; use an .npz with arrays x and y"
            )
        return files.load_npy(path, InputError, memory_map=True), None
    # numpy calls any unknown file "pickled data"; tell the two apart by their first bytes.
    if start[:4] not in files.ZIP_MAGICS:
        raise InputError(f"{path}: not a NumPy .npy/.npz file (it does not start like one)")
    with files.open_npz(path, InputError) as archive:
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
        x = files.npz_member(archive, x_key, path, InputError)
        return x, (files.npz_member(archive, y_key, path, InputError) if labelled else None)


def image_files(path: Path) -> list[Path]:
    """One image file, or every image under a folder (recursively, sorted, hidden files skipped)."""
    if path.is_file():
        return [path]
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: not a regular file")
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
    image_paths: list[Path], spec: InputSpec, batch: int, labels: list[Any] | None = None
) -> Iterator[Chunk]:
    """Images resized to the run's image_size and colour mode, in the training pixel range, in chunks.

    Every file is opened once before the first chunk, so an unreadable file is
    refused before anything is written.
    """
    if spec.image_size is None:
        raise ValueError("image_chunks needs a run trained on images (spec.image_size)")
    bad = []
    for file in image_paths:
        problem = files.image_problem(file, check_suffix=False)
        if problem is not None:
            bad.append(f"{file}: {problem}")
    if bad:
        raise InputError(
            *bad[:10], *([f"and {len(bad) - 10} more unreadable files"] if len(bad) > 10 else [])
        )
    resized = 0
    for start in range(0, len(image_paths), batch):
        part = image_paths[start : start + batch]
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
