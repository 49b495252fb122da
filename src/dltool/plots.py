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
