"""Plots written into run folders (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltool.rundir import atomic_path


def learning_curves(history: list[dict[str, Any]], target: Path) -> None:
    """One panel per quantity (loss, then each metric): training and validation by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        k
        for k in history[0]
        if not k.startswith("val_") and k not in ("epoch", "learning_rate", "duration_s")
    ]
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        axis.plot(epochs, [row[key] for row in history], marker="o", markersize=3, label="train")
        if f"val_{key}" in history[0]:
            axis.plot(
                epochs,
                [row[f"val_{key}"] for row in history],
                marker="o",
                markersize=3,
                label="validation",
            )
        axis.set_title(key.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_path(target, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


def confusion_matrix(matrix: list[list[int]], names: list[str], target: Path) -> None:
    """Counts of (true class, predicted class); the diagonal is what the model got right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.55 * len(names) + 2.5)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), labels=names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            color = "white" if count > peak / 2 else "black"
            axis.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    axis.set_title("confusion matrix (test)")
    figure.tight_layout()
    with atomic_path(target, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
