"""Your own data: a CSV table (``source: csv``) or NumPy arrays (``source: numpy``).

CSV: one row per example, a header line, one column the label (``target``); the
features are ``features`` or every other column, in file order. Cells are read
by pandas' C parser; a column it cannot read as numbers is re-read cell by cell
so the error names the exact cells. Line numbers are file lines: the header is
line 1, so data row ``i`` (from 0) is line ``i + 2`` (blank lines count; a
quoted cell spanning several lines shifts the count).

NumPy: an ``.npz`` with ``x_train``, ``y_train`` and optionally ``x_test``,
``y_test``; or an ``.npy`` of features with an ``.npy`` of labels. Never
unpickled (``allow_pickle=False``).

Classification labels become class indices 0..k-1 (int64) with ``class_names``;
regression labels stay float32. Every problem is a :class:`DataError` line that
names its file (and, for a cell, its line and column). Files are read through
:mod:`dltool.files` (regular files only; a file too large for memory is refused first).

Longer than 400 lines: it holds both of your own table sources, each with its schema,
and they share the listing and class-label rules; split it by source if either grows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from dltool import files
from dltool.data import Dataset
from dltool.data.source import DataPath, StreamingSource
from dltool.errors import DataError
from dltool.messages import did_you_mean

if TYPE_CHECKING:
    import numpy as np

    from dltool.data.rows import Rows

MAX_CELLS_SHOWN = 5  # bad cells listed one per line; the rest are counted
MAX_NAMES_SHOWN = 20  # column or class names listed in a message
TOO_BIG_ADVICE = " (stream it instead: data.loading: stream)"
NPZ_TOO_BIG_ADVICE = (
    " (an .npz is read whole: save the features as an .npy file with its labels in another, "
    "which dltool memory-maps and streams)"
)


class CsvData(StreamingSource):
    """A table: one row per example, one column the label."""

    source: Literal["csv"]
    path: DataPath = Field(..., description="CSV file with a header row")
    target: str = Field(..., min_length=1, description="the label column")
    features: list[str] | None = Field(
        None, min_length=1, description="input columns; default: every other column"
    )
    test_path: DataPath | None = Field(None, description="a separate test CSV (else test_split)")
    normalize: bool = Field(
        True, description="prepend a Normalization layer adapted on the training rows"
    )
    delimiter: str = Field(",", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> CsvData:
        if self.features and self.target in self.features:
            raise ValueError(
                f"features: the target column {self.target!r} cannot also be a feature"
            )
        return self

    def input_shape(self) -> list[int] | None:
        return [len(self.features)] if self.features else None

    def load(self, seed: int, task: str) -> Dataset:
        """The table's rows (``seed`` is unused: no randomness).

        Raises:
            DataError: one line per problem, each naming its file.
        """
        return _load_csv(self, task)


class NumpyData(StreamingSource):
    """Arrays: an .npz with x_train, y_train[, x_test, y_test], or an .npy pair."""

    source: Literal["numpy"]
    path: DataPath = Field(..., description=".npz archive, or .npy features")
    labels_path: DataPath | None = Field(None, description=".npy labels, with an .npy path")
    class_names: list[str] | None = Field(
        None, min_length=2, description="names of labels 0, 1, ..."
    )

    @model_validator(mode="after")
    def _labels_for_npy(self) -> NumpyData:
        if self.path.endswith(".npy") and self.labels_path is None:
            raise ValueError("labels_path: required when path is an .npy file (the labels array)")
        if self.path.endswith(".npz") and self.labels_path is not None:
            raise ValueError("labels_path: not used with an .npz archive (it holds y_train)")
        if not self.path.endswith((".npy", ".npz")):
            raise ValueError(f"path: expected a .npz or .npy file (received {self.path!r})")
        if self.path.endswith(".npz") and self.loading == "stream":
            raise ValueError(
                "loading: an .npz archive is read whole (received stream; expected memory or "
                "auto, or the features as an .npy file with labels_path, which can stream)"
            )
        return self

    def load(self, seed: int, task: str) -> Dataset:
        """The arrays (``seed`` is unused: no randomness).

        Raises:
            DataError: one line per problem, each naming its file.
        """
        return _load_numpy(self, task)


# ---------------------------------------------------------------------------- csv


def _load_csv(config: CsvData, task: str) -> Dataset:
    path, target = Path(config.path), config.target
    test_path = Path(config.test_path) if config.test_path is not None else None
    mode, why = config.loading_mode(sum(files.file_size(p) for p in (path, test_path) if p), "of CSV")  # fmt: skip
    if mode == "stream":
        from dltool.data.table_stream import stream_csv

        dataset = stream_csv(config, task)
        dataset.notes["loading"] = {"mode": mode, "why": why}
        return dataset
    for table in (path, test_path):  # before the header: a 2 GB file may have no newline
        if table is not None:
            needed = files.table_memory(table, config.delimiter)
            files.check_fits_memory(table, needed, DataError, TOO_BIG_ADVICE)
    columns = _header(path, config.delimiter)
    features = _feature_columns(path, columns, target, config.features)
    frame = _read_rows(path, config.delimiter, target)
    x, labels, problems = _table(frame, path, features, target, task)
    x_test = test_labels = None
    if test_path is not None:  # both files' cell problems are reported together
        _same_columns(test_path, _header(test_path, config.delimiter), path, columns)
        test_frame = _read_rows(test_path, config.delimiter, target)
        x_test, test_labels, test_problems = _table(test_frame, test_path, features, target, task)
        problems += test_problems
    if problems:
        raise DataError(*problems)

    dataset = Dataset(
        x_train=x,
        y_train=labels,
        x_test=x_test,
        y_test=test_labels,
        feature_names=features,
        notes={"file": str(path), "rows": len(x), "target": target, "normalize": config.normalize},
    )
    if test_path is not None and x_test is not None:
        dataset.notes.update(test_file=str(test_path), test_rows=len(x_test))
    dataset.notes["loading"] = {"mode": mode, "why": why}
    if task != "regression":
        dataset.y_train, names, mapping = _classes(labels, path, target, task)
        dataset.class_names = names
        if test_path is not None and test_labels is not None:
            dataset.y_test = _map_test_labels(test_labels, test_path, target, mapping, names)
    return dataset


def _read(path: Path, **options: Any) -> Any:
    """``pandas.read_csv`` of a training table, every failure a DataError."""
    return files.read_csv(
        path,
        DataError,
        skip_blank_lines=False,  # keeps row i on line i + 2
        index_col=False,  # never turn the first column into an index silently
        low_memory=False,  # one dtype per column, no DtypeWarning
        **options,
    )


def _header(path: Path, delimiter: str) -> list[str]:
    """Line 1's column names, as written; empty and repeated names are refused."""
    row = _read(path, sep=delimiter, header=None, nrows=1, dtype=str)
    names = ["" if not isinstance(name, str) else name for name in row.iloc[0].tolist()]
    problems = [
        f"{path}: line 1: column {position} has no name (expected a name for every column)"
        for position, name in enumerate(names, start=1)
        if not name.strip()
    ]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    problems += [f"{path}: line 1: column name {name!r} appears twice or more" for name in repeated]
    if problems:
        raise DataError(*problems)
    return names


def _listing(names: list[str]) -> str:
    """``'a', 'b', 'c'``: quoted, so spaces and odd characters show; long lists shortened."""
    shown = ", ".join(repr(name) for name in names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"{shown}, ... ({len(names)} in all)" if more > 0 else shown


def _feature_columns(
    path: Path, columns: list[str], target: str, features: list[str] | None
) -> list[str]:
    """The feature column names, checked against the header with the target."""
    problems = []
    if target not in columns:
        problems.append(
            f"{path}: data.target: no column {target!r}{did_you_mean(target, columns)} "
            f"(the columns are {_listing(columns)})"
        )
    problems += [
        f"{path}: data.features: no column {name!r}{did_you_mean(name, columns)} "
        f"(the columns are {_listing(columns)})"
        for name in features or []
        if name not in columns
    ]
    if problems:
        raise DataError(*problems)
    chosen = list(features) if features else [c for c in columns if c != target]
    if not chosen:
        raise DataError(
            f"{path}: no feature columns (the only column is the target {target!r}; "
            f"expected at least one other column)"
        )
    return chosen


def _same_columns(path: Path, columns: list[str], train_path: Path, train: list[str]) -> None:
    missing = [c for c in train if c not in columns]
    extra = [c for c in columns if c not in train]
    if missing or extra:
        parts = [f"missing {_listing(missing)}" if missing else "", f"extra {_listing(extra)}" if extra else ""]  # fmt: skip
        raise DataError(
            f"{path}: data.test_path: the columns differ from the training file {train_path} "
            f"({'; '.join(p for p in parts if p)}); expected the same columns"
        )


def _read_rows(path: Path, delimiter: str, target: str) -> Any:
    """Every data row (trailing blank lines dropped); the target column stays text."""
    import numpy as np

    frame = _read(path, sep=delimiter, dtype={target: str})
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    frame = frame.iloc[: filled[-1] + 1] if len(filled) else frame.iloc[:0]
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows (only a header line; expected rows below it)")
    return frame


Cell = tuple[int, int, str]  # (row from 0, column position or -1 for the whole row, problem)


def _table(
    frame: Any, path: Path, features: list[str], target: str, task: str
) -> tuple[np.ndarray, Any, list[str]]:
    """(features as float32, labels, problems): labels are float32 for regression, else text."""
    x, y, found, count = _cells(frame, features, target, task)
    numeric = [*features, target] if task == "regression" else features
    return x, y, _cell_report(path, found, count, [*numeric, target])


def _cells(
    frame: Any, features: list[str], target: str, task: str
) -> tuple[np.ndarray, Any, list[Cell], int]:
    """(features as float32, labels, the first problem cells, how many there are)."""
    import numpy as np

    blank = frame.isna().all(axis=1).to_numpy()  # ',,,' or an empty line between rows
    found: list[Cell] = [(int(row), -1, "an empty row") for row in np.flatnonzero(blank)[:MAX_CELLS_SHOWN]]  # fmt: skip
    count = int(blank.sum())
    numeric = [*features, target] if task == "regression" else features
    values = np.empty((len(frame), len(numeric)), dtype="float32")
    for position, column in enumerate(numeric):
        values[:, position], cells, bad = _numbers(frame[column], position, blank)
        found += cells
        count += bad
    if task != "regression":
        empty = np.flatnonzero(frame[target].isna().to_numpy() & ~blank)
        found += [(int(row), len(numeric), "empty cell") for row in empty[:MAX_CELLS_SHOWN]]
        count += len(empty)
    x = np.ascontiguousarray(values[:, : len(features)])
    y = values[:, -1] if task == "regression" else frame[target].to_numpy(dtype=object)
    return x, y, found, count


def _numbers(cells: Any, position: int, skip: np.ndarray) -> tuple[np.ndarray, list[Cell], int]:
    """``cells`` as float32, the first problem cells (rows in ``skip`` aside), and their count."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(cells):  # the fast case: pandas parsed every cell
        wide = cells.to_numpy(dtype="float64", na_value=np.nan)
        texts = None
    else:
        wide = pd.to_numeric(cells, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        texts = cells
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
        numbers = wide.astype("float32")
    bad = np.flatnonzero(~np.isfinite(numbers) & ~skip)
    found: list[Cell] = []
    for row in bad[:MAX_CELLS_SHOWN]:  # only these can be among the first shown
        # Quote the cell only where its text survives; pandas' parsed float is not what
        # the file says (a cell 1e400 reads as inf), so it is shown as "read as".
        text = repr(texts.iloc[row]) if texts is not None else None
        read = f"{wide[row]:g}"
        if pd.isna(cells.iloc[row]):
            problem = "empty cell"
        elif np.isnan(wide[row]):
            problem = f"{text or read} is not a number"
        elif np.isfinite(wide[row]):
            problem = f"{text or 'the value'} is too large (read as {read}; float32 ends near 3.4e38)"  # fmt: skip
        elif text is not None:
            problem = f"{text} is not a finite number"
        else:
            problem = f"not a finite number (read as {read}: the cell holds inf or a value beyond float64's range)"  # fmt: skip
        found.append((int(row), position, problem))
    return numbers, found, len(bad)


def _cell_report(path: Path, found: list[Cell], count: int, columns: list[str]) -> list[str]:
    """The first MAX_CELLS_SHOWN problem cells in file order, then how many more."""
    lines = [
        f"{path}: line {row + 2}: {problem}"
        if position == -1
        else f"{path}: line {row + 2}, column {columns[position]!r}: {problem}"
        for row, position, problem in sorted(found)[:MAX_CELLS_SHOWN]
    ]
    if count > len(lines):
        lines.append(f"{path}: and {count - len(lines)} more")
    return lines


def _classes(
    cells: np.ndarray, path: Path, target: str, task: str
) -> tuple[np.ndarray, list[str], dict[Any, int]]:
    """Class indices, class names and the name -> index mapping for test files.

    Labels that are all numbers are ordered numerically (names as first written);
    any other labels are ordered alphabetically.
    """
    import numpy as np

    numbers = _as_numbers(cells)
    if numbers is not None:
        values, first, indices = np.unique(numbers, return_index=True, return_inverse=True)
        names = [str(cells[i]) for i in first]
        mapping: dict[Any, int] = {float(v): i for i, v in enumerate(values)}
    else:
        names = sorted({str(c) for c in cells})
        mapping = {name: i for i, name in enumerate(names)}
        indices = np.fromiter((mapping[c] for c in cells), dtype="int64", count=len(cells))
    if task == "binary" and len(names) != 2:
        raise DataError(
            f"{path}: column {target!r}: binary_crossentropy needs exactly 2 classes, found "
            f"{len(names)}: {_listing(names)} (for more classes use loss: "
            f"sparse_categorical_crossentropy with one output unit per class)"
        )
    if len(names) < 2:
        raise DataError(
            f"{path}: column {target!r}: only one class ({names[0]!r}); classification needs "
            f"at least 2 (or use a regression loss such as mean_squared_error)"
        )
    return np.asarray(indices, dtype="int64").reshape(-1), names, mapping


def _as_numbers(cells: np.ndarray) -> np.ndarray | None:
    """The labels as float64 when every one is a finite number, else None."""
    import numpy as np
    import pandas as pd

    numbers = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    return numbers if np.isfinite(numbers).all() else None


def _map_test_labels(
    cells: np.ndarray, path: Path, target: str, mapping: dict[Any, int], names: list[str]
) -> np.ndarray:
    """Test labels as the training classes' indices; an unknown class is an error."""
    indices = class_indices(cells, mapping)
    refuse_unknown(indices, lambda row: str(cells[row]), path, target, names)
    return indices


def class_indices(cells: np.ndarray, mapping: dict[Any, int]) -> np.ndarray:
    """Labels as written -> the training classes' indices (-1: not a training class).

    Numeric classes (``mapping`` keyed by numbers) match by value: "1.0" is class "1".
    """
    import numpy as np

    numeric = bool(mapping) and isinstance(next(iter(mapping)), float)
    keys = _as_numbers(cells) if numeric else None
    if numeric and keys is None:  # some text label among numeric classes: map one by one
        keys = np.asarray([_number_or_text(c) for c in cells], dtype=object)
    lookup = keys if keys is not None else cells
    return np.fromiter((mapping.get(k, -1) for k in lookup), dtype="int64", count=len(cells))


def refuse_unknown(indices: np.ndarray, label: Callable[[int], str], path: Path, target: str, names: list[str]) -> None:  # fmt: skip
    """Refuse test labels of no training class (index -1), naming each one's file line.

    Args:
        indices: each test row's class index, -1 where the label is not a training class.
        label: row -> its label as written.
    """
    import numpy as np

    unknown = np.flatnonzero(indices < 0)
    if unknown.size:
        lines = [
            f"{path}: line {row + 2}, column {target!r}: unknown class {label(int(row))!r} "
            f"(the training file has {_listing(names)})"
            for row in unknown[:MAX_CELLS_SHOWN]
        ]
        if unknown.size > MAX_CELLS_SHOWN:
            lines.append(f"{path}: and {unknown.size - MAX_CELLS_SHOWN} more")
        raise DataError(*lines)


def _number_or_text(cell: Any) -> Any:
    try:
        return float(cell)
    except ValueError:
        return str(cell)


# -------------------------------------------------------------------------- numpy


def _load_numpy(config: NumpyData, task: str) -> Dataset:
    from dltool.data.rows import mark_checked

    path = Path(config.path)
    if config.labels_path is None:  # an .npz archive (the schema makes sure)
        arrays = _npz_arrays(path)
        x_train, y_train = arrays["x_train"], arrays["y_train"]
        x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
        where = {name: f"{path}: {name}" for name in arrays}
        notes: dict[str, Any] = {"file": str(path), "loading": {"mode": "memory", "why": "an .npz is read whole"}}  # fmt: skip
    else:
        labels_path = Path(config.labels_path)
        mapped = files.load_npy(path, DataError, memory_map=True)  # the header: shape, dtype
        mode, why = config.loading_mode(4 * mapped.size, "of float32 features")
        notes = {"file": str(path), "labels_file": str(labels_path), "loading": {"mode": mode, "why": why}}  # fmt: skip
        x_train = mapped if mode == "stream" else _npy_array(path)  # mapped: read per batch
        y_train = _npy_array(labels_path)
        x_test = y_test = None
        where = {"x_train": str(path), "y_train": str(labels_path)}

    problems = _pair_problems(x_train, y_train, where["x_train"], where["y_train"])
    if x_test is not None and y_test is not None:
        problems += _pair_problems(x_test, y_test, where["x_test"], where["y_test"])
        if not problems and x_test.shape[1:] != x_train.shape[1:]:
            problems.append(
                f"{where['x_test']}: examples have shape {list(x_test.shape[1:])} but x_train's "
                f"have {list(x_train.shape[1:])} (expected the same)"
            )
    if problems:
        raise DataError(*problems)

    dataset = Dataset(
        x_train=_features(x_train), y_train=y_train, notes={**notes, "rows": len(x_train)}
    )
    if x_test is not None and y_test is not None:
        dataset.x_test, dataset.y_test = _features(x_test), y_test
        dataset.notes["test_rows"] = len(x_test)
    labelled = [("y_train", dataset.y_train)]
    if dataset.y_test is not None:
        labelled.append(("y_test", dataset.y_test))
    if task == "regression":
        for name, y in labelled:
            _check_finite(y, where[name])
        dataset.y_train = dataset.y_train.astype("float32")  # finite in float32: checked
        if dataset.y_test is not None:
            dataset.y_test = dataset.y_test.astype("float32")
    else:
        dataset.y_train, dataset.y_test, dataset.class_names = _class_indices(
            labelled, where, config, task
        )
    for name, x in (("x_train", dataset.x_train), ("x_test", dataset.x_test)):
        if x is not None:
            _check_finite(x, where[name])
            mark_checked(x)  # one pass is enough: training does not check it again
    return dataset


def _npy_array(path: Path) -> np.ndarray:
    """One .npy array, never unpickled."""
    files.check_fits_memory(path, files.array_memory(path), DataError, TOO_BIG_ADVICE)
    return files.load_npy(path, DataError)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """x_train, y_train and (both or neither) x_test, y_test from an .npz archive."""
    files.check_fits_memory(path, files.array_memory(path), DataError, NPZ_TOO_BIG_ADVICE)
    with files.open_npz(path, DataError) as archive:
        keys = list(archive.keys())
        found = _listing(keys) or "no arrays"
        missing = [k for k in ("x_train", "y_train") if k not in keys]
        tests = [k for k in ("x_test", "y_test") if k in keys]
        problems = [f"{path}: no array {k!r} (found {found})" for k in missing]
        if len(tests) == 1:
            other = "y_test" if tests[0] == "x_test" else "x_test"
            problems.append(f"{path}: {tests[0]!r} without {other!r} (found {found}; expected both or neither)")  # fmt: skip
        if problems:
            raise DataError(*problems)
        return {key: files.npz_member(archive, key, path, DataError) for key in ("x_train", "y_train", *tests)}  # fmt: skip


def _pair_problems(x: np.ndarray, y: np.ndarray, x_where: str, y_where: str) -> list[str]:
    import numpy as np

    problems = []
    for array, where in ((x, x_where), (y, y_where)):
        if array.ndim == 0 or len(array) == 0:
            problems.append(f"{where}: no examples (shape {list(array.shape)})")
        elif not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            problems.append(f"{where}: holds {array.dtype} values, not numbers")
        elif np.issubdtype(array.dtype, np.complexfloating):
            problems.append(f"{where}: holds complex numbers (expected real numbers)")
    if not problems and len(x) != len(y):
        problems.append(
            f"{x_where}: {len(x)} examples but {y_where} has {len(y)} labels "
            f"(expected the same number)"
        )
    return problems


def _features(x: np.ndarray) -> np.ndarray | Rows:
    """float32, one row per example; a 1-D array is one feature per example.

    A memory-mapped array becomes Rows, read (as float32) batch by batch.
    """
    import numpy as np

    if isinstance(x, np.memmap):
        from dltool.data.rows import ArrayReader, Rows

        mapped = x.reshape(-1, 1) if x.ndim == 1 else x
        return Rows.of(ArrayReader(mapped), len(mapped))

    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by _check_finite
        x = np.asarray(x, dtype="float32")
    return x.reshape(-1, 1) if x.ndim == 1 else x


def _check_finite(array: np.ndarray | Rows, where: str) -> None:
    """Refuse NaN, infinity and values beyond float32 (Rows: a chunk at a time)."""
    import numpy as np

    from dltool.data.rows import chunks_of

    values = examples = start = 0
    first = -1
    for chunk in chunks_of(array):
        with np.errstate(over="ignore"):
            finite = np.isfinite(np.asarray(chunk, dtype="float32"))
        if not finite.all():
            rows = np.flatnonzero(~finite.reshape(len(chunk), -1).all(axis=1))
            values, examples = values + int((~finite).sum()), examples + rows.size
            first = first if first >= 0 else start + int(rows[0])
        start += len(chunk)
    if values:
        raise DataError(
            f"{where}: {values} values are NaN or infinite (or beyond float32), "
            f"in {examples} examples, the first at index {first}"
        )


def _class_indices(
    labelled: list[tuple[str, np.ndarray]], where: dict[str, str], config: NumpyData, task: str
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(y_train, y_test, class_names) with labels as int64 class indices, checked."""
    import numpy as np

    problems: list[str] = []
    indices: dict[str, np.ndarray] = {}
    for name, y in labelled:
        flat = y.reshape(-1) if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1) else None
        if flat is None:
            problems.append(
                f"{where[name]}: labels have shape {list(y.shape)} (expected one class index "
                f"per example: shape [{len(y)}])"
            )
            continue
        flat = flat.astype("float64")
        whole = np.isfinite(flat) & (flat == np.round(flat)) & (flat >= 0)
        if not whole.all():
            bad = np.flatnonzero(~whole)
            shown = ", ".join(f"{flat[i]:g}" for i in bad[:MAX_CELLS_SHOWN])
            problems.append(
                f"{where[name]}: labels must be class indices 0, 1, 2, ... (received {shown} "
                f"at index {int(bad[0])}{f' and {bad.size - 1} more' if bad.size > 1 else ''})"
            )
            continue
        indices[name] = flat.astype("int64")
    if problems:
        raise DataError(*problems)
    top = max(int(y.max()) for y in indices.values())
    names = config.class_names
    if task == "binary" and (top > 1 or (names is not None and len(names) != 2)):
        received = f"labels up to {top}" if top > 1 else f"{len(names or [])} class_names"
        raise DataError(
            f"{where['y_train']}: binary_crossentropy needs 2 classes, labels 0 and 1 "
            f"(received {received}; for more classes use loss: sparse_categorical_crossentropy)"
        )
    if names is not None and top >= len(names):
        raise DataError(
            f"{where['y_train']}: label {top} has no name in data.class_names "
            f"({len(names)} names cover labels 0..{len(names) - 1}; expected {top + 1} names)"
        )
    if names is None:
        names = [str(i) for i in range(max(top + 1, 2))]
    return indices["y_train"], indices.get("y_test"), list(names)
