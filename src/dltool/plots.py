"""Plots written into run folders (matplotlib, no display needed).

The HTML report (:mod:`dltool.report`) is the place to explore a run; these PNGs are the
quick look that works anywhere an image does (a file browser, a chat, a CI artifact).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from dltool.rundir import atomic_path

COLUMNS = 3  # panels per row: five quantities make a 3 + 2 grid, not one thin row
MARKERS_UP_TO = 30  # epochs: beyond this a dot on every point is a smear


def _plain(text: str) -> str:
    """Text from files as matplotlib shows it literally: a ``$`` would start math mode."""
    return text.replace("$", r"\$")


def learning_curves(
    history: list[dict[str, Any]],
    target: Path,
    run_name: str = "",
    best_epoch: int | None = None,
) -> None:
    """One panel per quantity (loss, then each metric): training and validation by epoch.

    Args:
        history: history.csv's rows.
        target: the PNG to write.
        run_name: shown in the title.
        best_epoch: marked with a dashed line (the epoch whose weights the model kept).
    """
    _save(learning_curves_figure(history, run_name, best_epoch), target)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, target: Path) -> None:
    write_png(png(figure), target)


def png(figure: Any) -> bytes:
    """The figure as PNG bytes (then closed): drawing is the slow part, and it touches no
    file, so a run draws its plots on a thread while it evaluates (one figure at a time:
    pyplot is not thread-safe)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    _pyplot().close(figure)
    return buffer.getvalue()


def write_png(data: bytes, target: Path) -> None:
    with atomic_path(target, suffix=".png") as temporary:
        temporary.write_bytes(data)


def learning_curves_figure(
    history: list[dict[str, Any]], run_name: str = "", best_epoch: int | None = None
) -> Any:
    """The figure :func:`learning_curves` saves (a matplotlib Figure)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()

    keys = [
        k
        for k in history[0]
        if not k.startswith("val_") and k not in ("epoch", "learning_rate", "duration_s")
    ]
    epochs = [row["epoch"] for row in history]
    columns = min(COLUMNS, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 3.4 * rows + 0.5), squeeze=False
    )
    style: dict[str, Any] = {"marker": "o", "markersize": 3} if len(epochs) <= MARKERS_UP_TO else {}
    for axis, key in zip(axes.flat, keys, strict=False):
        axis.plot(epochs, [row[key] for row in history], label="train", **style)
        if f"val_{key}" in history[0]:
            axis.plot(epochs, [row[f"val_{key}"] for row in history], label="validation", **style)
        if best_epoch is not None:
            axis.axvline(best_epoch, color="#16a34a", linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch}")  # fmt: skip
        axis.set_title(key.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(keys) :]:
        axis.set_visible(False)
    figure.suptitle(f"{_plain(run_name)}: learning curves" if run_name else "learning curves")
    figure.tight_layout()
    return figure


def confusion_matrix(
    matrix: list[list[int]], names: list[str], target: Path, data_name: str = "test"
) -> None:
    """Counts of (true class, predicted class); the diagonal is what the model got right.

    ``data_name`` says which data was scored: ``test`` for a run, the file for ``evaluate``.
    """
    _save(confusion_matrix_figure(matrix, names, data_name), target)


def confusion_matrix_figure(matrix: list[list[int]], names: list[str], data_name: str) -> Any:
    """The figure :func:`confusion_matrix` saves (a matplotlib Figure)."""
    plt = _pyplot()
    size = max(4.0, 0.55 * len(names) + 2.5)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    shown = [_plain(name if len(name) <= 20 else name[:19] + "\u2026") for name in names]
    axis.set_xticks(range(len(names)), labels=shown, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), labels=shown)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            color = "white" if count > peak / 2 else "black"
            axis.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    title = data_name if len(data_name) <= 40 else "\u2026" + data_name[-39:]
    axis.set_title(f"confusion matrix ({_plain(title)})")
    figure.tight_layout()
    return figure
