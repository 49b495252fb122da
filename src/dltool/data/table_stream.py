"""Tables bigger than memory: a CSV read in chunks into a memory-mapped cache, an ``.npy`` mapped.

``source: csv`` with ``loading: stream`` (or ``auto`` and a file over
:data:`dltool.data.source.IN_MEMORY_BYTES`) reads the file once, CHUNK_ROWS rows at a
time, with the same cell checks and messages as the in-memory reader (file line
numbers included), and writes the features as float32 rows to a cache entry keyed
by the file's path, size and modification time and the column settings
(:func:`dltool.data.rows.cached`); a later run on the same file reuses it. Labels
stay in memory as class indices (8 bytes a row) or float32 values. Training then
reads batches from the memory-mapped features (:class:`dltool.data.rows.Rows`);
the seeded split works on row positions, and ``data.normalize`` adapts its
statistics in one streaming pass.

``source: numpy`` with an ``.npy`` pair maps the features file instead of reading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltool import files
from dltool.data import Dataset
from dltool.data.rows import ArrayReader, Rows, cache_key, cached
from dltool.data.tabular import (
    MAX_CELLS_SHOWN,
    Cell,
    _cell_report,
    _cells,
    _classes,
    _feature_columns,
    _header,
    _same_columns,
    class_indices,
    refuse_unknown,
)
from dltool.errors import DataError
from dltool.interrupts import raise_if_requested

if TYPE_CHECKING:
    from dltool.data.tabular import CsvData

CHUNK_ROWS = 200_000  # rows parsed at once (pandas peaks at a few hundred bytes a row)
FEATURES = "features.f32"  # a cache entry's float32 rows, row after row
LABELS = "labels.npy"
META = "meta.json"


def stream_csv(config: CsvData, task: str) -> Dataset:
    """The CSV of ``config`` as Rows over a cache entry (made first if missing).

    Raises:
        DataError: one line per problem, each naming its file, as for an in-memory read.
    """
    path, target = Path(config.path), config.target
    test_path = Path(config.test_path) if config.test_path is not None else None
    for table in (path, test_path):
        if table is not None:
            _header_fits(table)
    columns = _header(path, config.delimiter)
    features = _feature_columns(path, columns, target, config.features)
    if test_path is not None:
        _same_columns(test_path, _header(test_path, config.delimiter), path, columns)
    tables = [_table(t, config.delimiter, features, target, task) for t in (path, test_path) if t]  # fmt: skip
    problems = [line for _, _, lines in tables for line in lines]
    if problems:
        raise DataError(*problems)
    (x, labels, _), *test = tables
    names: list[str] | None = None
    if task == "regression":
        y = labels["values"]
        y_test = test[0][1]["values"] if test else None
    else:
        names, indices, mapping = _class_order(labels, path, target, task)
        y = indices[labels["codes"]]
        y_test = _test_classes(test[0][1], test_path, target, mapping, names) if test_path else None  # fmt: skip
    dataset = Dataset(
        x_train=x,
        y_train=y,
        x_test=test[0][0] if test else None,
        y_test=y_test,
        feature_names=features,
        class_names=names,
        notes={"file": str(path), "rows": len(x), "target": target, "normalize": config.normalize},
    )
    if test:
        dataset.notes.update(test_file=str(test_path), test_rows=len(test[0][0]))
    return dataset


def _header_fits(path: Path) -> None:
    """Refuse a file whose first line is not a header a chunked read can take (no line end)."""
    from dltool.files import CSV_SAMPLE_BYTES, FileRefused, open_regular
    from dltool.messages import size_in_bytes

    try:
        with open_regular(path, "a CSV file") as handle:
            start = handle.read(CSV_SAMPLE_BYTES)
    except (FileRefused, OSError):
        return  # the reader reports it, with its reason
    if len(start) == CSV_SAMPLE_BYTES and b"\n" not in start:
        raise DataError(
            f"{path}: line 1 is longer than {size_in_bytes(CSV_SAMPLE_BYTES)} (expected a header "
            "line of column names, then one line per row)"
        )


def _table(path: Path, delimiter: str, features: list[str], target: str, task: str) -> tuple[Rows, dict[str, Any], list[str]]:  # fmt: skip
    """(features as Rows, labels, problems) of one CSV file, through the cache."""
    settings = ["csv", delimiter, features, target, task == "regression"]
    entry = cached(
        f"table-{cache_key(settings, [path])}",
        lambda into: _convert(path, into, delimiter, features, target, task),
    )
    meta = json.loads((entry / META).read_text())
    if meta["problems"]:  # a file with bad cells is refused again, without a second read
        return Rows.of(ArrayReader(np.zeros((0, len(features)), "float32")), 0), {}, meta["problems"]  # fmt: skip
    rows = meta["rows"]
    x = np.memmap(entry / FEATURES, dtype="float32", mode="r", shape=(rows, len(features)))
    stored = np.load(entry / LABELS, allow_pickle=False)
    labels: dict[str, Any] = {"values": stored} if task == "regression" else {"codes": stored, "texts": meta["texts"]}  # fmt: skip
    return Rows.of(ArrayReader(x, checked=True), rows), labels, []  # every cell checked


def _convert(path: Path, into: Path, delimiter: str, features: list[str], target: str, task: str) -> None:  # fmt: skip
    """Read ``path`` chunk by chunk into ``into``: float32 features, labels, and the problems."""
    found: list[Cell] = []
    count = 0
    rows = 0  # data rows read so far
    filled = 0  # rows up to the last one that is not blank (trailing blank lines are dropped)
    trailing_blanks = 0  # blank rows since the last filled one: no problem unless a row follows
    texts: dict[str, int] = {}  # class label text -> code, in order of first appearance
    labels: list[np.ndarray] = []
    with open(into / FEATURES, "wb") as out:
        for frame in files.csv_chunks(
            path, DataError, CHUNK_ROWS, sep=delimiter, dtype={target: str},
            skip_blank_lines=False, index_col=False,
        ):  # fmt: skip
            x, y, cells, bad = _cells(frame, features, target, task)
            blank = frame.isna().all(axis=1).to_numpy()
            found += [(row + rows, position, problem) for row, position, problem in cells]
            found = sorted(found)[:MAX_CELLS_SHOWN]
            count += bad
            nonblank = np.flatnonzero(~blank)
            if len(nonblank):
                filled = rows + int(nonblank[-1]) + 1
                trailing_blanks = int(blank[nonblank[-1] + 1 :].sum())
            else:
                trailing_blanks += len(frame)
            out.write(np.ascontiguousarray(x, dtype="float32").tobytes())
            if task == "regression":
                labels.append(np.asarray(y, dtype="float32"))
            else:
                labels.append(_codes(y, texts))
            rows += len(frame)
            raise_if_requested()  # Ctrl-C: stop between chunks (the entry is removed)
    # Blank rows after the last filled one are the file's trailing blank lines, not problems.
    found = [cell for cell in found if not (cell[1] == -1 and cell[0] >= filled)]
    count -= trailing_blanks
    columns = [*features, target] if task == "regression" else features
    problems = [] if filled == 0 else _cell_report(path, found, count, [*columns, target])
    if filled == 0:
        problems = [f"{path}: no data rows (only a header line; expected rows below it)"]
    if problems:  # the entry only replays the refusal: no rows kept
        (into / FEATURES).unlink()
    stored = np.concatenate(labels)[:filled] if labels and not problems else np.zeros(0)
    np.save(into / LABELS, stored, allow_pickle=False)
    meta = {"rows": filled, "texts": list(texts), "problems": problems}
    (into / META).write_text(json.dumps(meta))


def _codes(cells: np.ndarray, texts: dict[str, int]) -> np.ndarray:
    """Label texts as codes in order of first appearance (``texts`` grows); -1 for empty."""
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(cells, dtype=object), use_na_sentinel=True)
    lookup = np.array([texts.setdefault(str(u), len(texts)) for u in uniques] + [-1], dtype="int64")  # fmt: skip
    return lookup[codes]  # code -1 (an empty cell) picks the last entry: -1


def _class_order(labels: dict[str, Any], path: Path, target: str, task: str) -> tuple[list[str], np.ndarray, dict[Any, int]]:  # fmt: skip
    """(class names, class index of each label code, label -> index), ordered as the
    in-memory reader orders them."""
    texts = np.asarray(labels["texts"], dtype=object)
    indices, names, mapping = _classes(texts, path, target, task)  # one cell per distinct label
    return names, np.append(indices, -1), mapping  # code -1: an empty cell, refused before this


def _test_classes(labels: dict[str, Any], path: Path, target: str, mapping: dict[Any, int], names: list[str]) -> np.ndarray:  # fmt: skip
    """The test file's labels as training class indices, by the in-memory reader's rule
    (:func:`dltool.data.tabular.class_indices`); an unknown class is an error."""
    distinct = class_indices(np.asarray(labels["texts"], dtype=object), mapping)
    test = np.append(distinct, -1)[labels["codes"]]
    refuse_unknown(test, lambda row: labels["texts"][labels["codes"][row]], path, target, names)
    return test
