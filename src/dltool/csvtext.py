"""CSV text built by numpy: byte for byte what ``pandas.DataFrame(columns).to_csv(index=False)``
writes for columns of whole numbers and plain text, or None where pandas must write it.

``dltool predict`` writes its output with it: formatting and writing 1,000,000 rows took
4.5 s of formatting and 2.2 s of ``to_csv`` before, 0.5-0.6 s in all now
(benchmarks/results-predict.md). Anything pandas would quote, or a value that is neither text
nor a whole number, makes :func:`csv_text` return None, and the caller has pandas write that
chunk: the file is the same either way (tests/test_predict.py compares them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dltool.evaluation import whole_number_text

LINE_END = os.linesep  # what pandas' to_csv ends lines with
QUOTED = ',"\r\n'  # pandas quotes a field holding one of these (QUOTE_MINIMAL)


def csv_text(columns: dict[str, Any], header: bool) -> str | None:
    """``pandas.DataFrame(columns).to_csv(index=False, header=header)``'s text, built by numpy,
    or None where pandas must write it: a field it would quote, a value neither text nor a
    whole number.

    Each column becomes a matrix of UTF-8 bytes (one row per value, zero-padded); side by
    side, each followed by a comma or the line end, read row by row without the padding,
    they are the CSV text (1M rows: see benchmarks/results-predict.md).
    """
    names = list(columns)
    if not all(isinstance(name, str) and _plain(name) for name in names):
        return None
    texts: list[np.ndarray] = []
    for values in columns.values():
        text = _column(values)
        if text is None:
            return None
        texts.append(text)
    separators = [b","] * (len(texts) - 1) + [LINE_END.encode()]
    rows = len(texts[0])
    width = sum(text.dtype.itemsize + len(after) for text, after in zip(texts, separators, strict=True))  # fmt: skip
    table = np.empty((rows, width), dtype="uint8")  # each row's bytes, padding included
    kept = np.ones((rows, width), dtype=bool)  # the bytes that are not padding
    start = 0
    for text, after in zip(texts, separators, strict=True):
        size = text.dtype.itemsize
        table[:, start : start + size] = text.view("uint8").reshape(rows, size)
        lengths = np.strings.str_len(text)
        if lengths.min(initial=size) < size:
            np.less(np.arange(size), lengths[:, None], out=kept[:, start : start + size])
        table[:, start + size : start + size + len(after)] = np.frombuffer(after, dtype="uint8")
        start += size + len(after)
    body = (table if kept.all() else table[kept]).tobytes().decode()
    return ",".join(names) + LINE_END + body if header else body


def _column(values: Any) -> np.ndarray | None:
    """A column's values as a numpy bytes array (UTF-8), as pandas writes them; None where
    pandas must write them (see :func:`csv_text`)."""
    import pandas as pd

    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return _ascii(whole_number_text(values))  # pandas writes whole numbers as str() does
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":  # fixed_point's, for one
        text = np.ascontiguousarray(values)
        codes = text.view("uint32")
        # ASCII without control characters, space or punctuation up to "," (which holds all
        # that pandas quotes): as it is. Other text: checked and encoded below.
        if codes.max(initial=0) < 128 and not ((codes - 1) < ord(",")).any():
            return _ascii(text)
        values = values.astype(object)
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        return None
    # Text (ids, class names): each different value checked and encoded once.
    where, different = pd.factorize(np.asarray(values, dtype=object))
    if (where < 0).any() or not all(isinstance(value, str) for value in different):
        return None  # a missing or non-text value
    if not _plain("".join(different)):
        return None
    try:
        encoded = np.array([value.encode() for value in different], dtype=bytes)
    except UnicodeEncodeError:  # a lone surrogate (an undecodable file name): pandas fails too
        return None
    return encoded[where]


def _ascii(text: np.ndarray) -> np.ndarray:
    """An ASCII string array (contiguous) as bytes, by its code points: ``astype`` is ~100x slower."""
    width = text.dtype.itemsize // 4
    return text.view("uint32").astype("uint8").view(f"S{width}").reshape(len(text))


def _plain(text: str) -> bool:
    """Written as it is: nothing pandas quotes, and no NUL, which numpy's strings drop at the end."""
    return not any(mark in text for mark in QUOTED + LINE_END + "\x00")
