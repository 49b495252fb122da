"""``dltool data``: write the dataset a config trains on, so people can see what the model sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dltool.data import Dataset
from dltool.data.rows import Rows, examples, failures
from dltool.errors import InputError, UsageError
from dltool.inputs import image_file_scale
from dltool.rundir import write_csv


def seed_for_splits(config: Any, seed: int | None, source: Path) -> tuple[int, str | None]:
    """The seed ``dltool data`` splits with, and a note to print when the config sets none.

    A config's own seed wins; ``--seed`` serves configs without one (default 0).

    Raises:
        UsageError: the config sets a seed and ``--seed`` gives another.
    """
    if config.seed is not None:
        if seed is not None and seed != config.seed:
            raise UsageError(
                f"{source}: seed: the file sets {config.seed} (received --seed {seed}; "
                "expected no --seed, or a config without a seed)"
            )
        return int(config.seed), None
    chosen = seed or 0
    note = (
        f"note: {source} sets no seed; splitting with seed {chosen} "
        "(a run without a seed draws its own: use RUN/config.yaml for its exact splits)"
    )
    return chosen, note


def class_counts(dataset: Dataset) -> dict[str, dict[str, int]]:
    """split -> class name -> examples (classification data only)."""
    counts: dict[str, dict[str, int]] = {}
    for split, (_, y) in dataset.splits().items():
        labels = np.asarray(y).reshape(len(y), -1)
        if labels.shape[1] != 1 or not np.issubdtype(labels.dtype, np.integer):
            return {}
        values, numbers = np.unique(labels[:, 0], return_counts=True)
        names = dataset.class_names or [str(v) for v in values]
        counts[split] = {names[int(v)]: int(n) for v, n in zip(values, numbers, strict=True)}
    return counts


def _label_text(dataset: Dataset, label: Any) -> str:
    value = np.asarray(label).reshape(-1)[0]
    if dataset.class_names and np.issubdtype(np.asarray(value).dtype, np.integer):
        return dataset.class_names[int(value)]
    return str(value.item() if hasattr(value, "item") else value)


def _write_table(
    dataset: Dataset, split: str, x: np.ndarray | Rows, y: np.ndarray, out: Path, target: str
) -> str:
    columns = dataset.feature_names or [f"x{i}" for i in range(int(np.prod(x.shape[1:])))]
    # float32 values printed at float32 precision: 7.3, not 7.300000190734863. Made one row
    # at a time as they are written: a streamed table may not fit in memory as text.
    rows = (
        [
            *(np.format_float_positional(v, trim="-") for v in row.reshape(-1).astype("float32")),
            _label_text(dataset, label),
        ]
        for row, label in zip(examples(x), y, strict=True)
        if row is not None
    )
    path = out / f"{split}.csv"
    write_csv(path, [*columns, target], rows)
    return str(path)


def _write_images(
    dataset: Dataset, split: str, x: np.ndarray | Rows, y: np.ndarray, out: Path, scale: int
) -> str:
    from PIL import Image

    folder = out / split
    for index, (image, label) in enumerate(zip(examples(x), y, strict=True)):
        if image is None:  # a file that cannot be decoded: training skips it too
            continue
        # Rounded, not truncated: whole-number pixels come back exactly when divided by scale.
        pixels = np.asarray(image, dtype="float32") * scale
        pixels = np.clip(np.rint(pixels), 0, 255).astype("uint8")
        target = folder / _label_text(dataset, label) / f"{index:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        Image.fromarray(pixels).save(target)
    return str(folder)


def export_dataset(
    dataset: Dataset, out: Path, target: str = "label", source: str = ""
) -> dict[str, Any]:
    """Write every split under ``out``: CSV files for tables, PNG folders per class for images.

    Image pixels are multiplied by :func:`dltool.inputs.image_file_scale` (digits'
    0..16 by 15), the factor a run trained on the same data records, so
    ``dltool predict`` and ``evaluate`` read the PNGs back as the model saw them.

    Args:
        dataset: the splits, as training sees them.
        out: a new or empty folder.
        target: the label column of the CSV files.
        source: ``data.source`` of the config (``image_folder`` pixels are written as they are).

    Raises:
        InputError: ``out`` exists and is not an empty folder (nothing is overwritten).
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(
            f"{out}: exists and is not empty (choose a new folder; nothing is overwritten)"
        )
    out.mkdir(parents=True, exist_ok=True)
    images = dataset.x_train.ndim >= 3
    scale = image_file_scale(dataset, source)
    written = {
        split: (
            _write_images(dataset, split, x, y, out, scale)
            if images
            else _write_table(dataset, split, x, y, out, target)
        )
        for split, (x, y) in dataset.splits().items()
    }
    # Streamed image files that passed the pre-scan but failed to decode just now (a cut-off
    # JPEG): not written, and named, never dropped silently.
    left_out = [f"{file}: {reason}" for file, reason in failures(*(x for x, _ in dataset.splits().values()))]  # fmt: skip
    return {"written": written, "stretch": scale, "left_out": left_out}
