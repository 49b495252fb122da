"""The report's "Inside the model" section, from internals.json and internals.npz
(``training.record_internals``): each part with one sentence on what to look for."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dltool.report import charts
from dltool.report.charts import Series
from dltool.report.html import Markup, number, section, text
from dltool.rundir import INTERNALS, INTERNALS_PICTURES, json_object

RIDGES = 6  # epochs drawn per layer's weight histogram: the first, the last and evenly between

WEIGHTS_HINT = "Each layer's weights at a few epochs, first at the top: spreading out is learning; a histogram that never moves belongs to a layer that hardly learns (vanishing gradients); weights growing without bound call for regularization."  # fmt: skip
DEAD_HINT = "A ReLU unit that outputs 0 for every input gets no gradient and stops learning for good: a fraction that climbs means too high a learning rate or a bad initialization."  # fmt: skip
GRADIENT_HINT = "How strongly the loss pulls on each layer's weights. Gradients shrinking towards the first layers are vanishing gradients (sigmoid and tanh in deep nets); very large ones are exploding gradients."  # fmt: skip
FILTERS_HINT = "The first conv layer's filters after training: edge, stripe and blob detectors are a CNN that learned; pure noise is one that has not (yet)."  # fmt: skip
MAPS_HINT = "One test image through each conv layer (bright = strong response): early layers keep the picture's outlines, deeper ones respond to fewer, larger parts."  # fmt: skip


def inside_section(folder: Path, data: dict[str, Any]) -> str:
    """The section, or "" for a run that did not record its internals."""
    recorded, _ = json_object(folder / INTERNALS)
    if not recorded:
        return ""
    epochs = [e for e in recorded.get("epochs") or [] if isinstance(e, int)]
    body = []
    histograms = recorded.get("histograms")
    if isinstance(histograms, dict) and histograms and epochs:
        ridges = [_ridges(name, h, epochs) for name, h in histograms.items() if isinstance(h, dict)]  # fmt: skip
        body.append(_part("Weights", WEIGHTS_HINT, f"<div class=charts>{''.join(ridges)}</div>"))
    dead = recorded.get("dead_relu")
    if isinstance(dead, dict) and dead and epochs:
        series = [Series(name, _numbers(v, len(epochs)), charts.PALETTE[i % len(charts.PALETTE)]) for i, (name, v) in enumerate(dead.items())]  # fmt: skip
        chart = charts.line_chart("inside-dead", "fraction of dead ReLU units", epochs, series, y_range=(-0.02, 1.02))  # fmt: skip
        data["charts"]["inside-dead"] = chart.data
        body.append(_part("Dead ReLU units", DEAD_HINT, chart.html))
    gradients = recorded.get("gradient_norms")
    if isinstance(gradients, dict) and gradients and epochs:
        series = [Series(name, _numbers(v, len(epochs)), charts.PALETTE[i % len(charts.PALETTE)]) for i, (name, v) in enumerate(gradients.items())]  # fmt: skip
        chart = charts.line_chart("inside-gradients", "gradient norm per layer", epochs, series)
        data["charts"]["inside-gradients"] = chart.data
        last = [(name, s.values[-1] if s.values else None) for name, s in zip(gradients, series, strict=True)]  # fmt: skip
        table = "<h4>At the last epoch, first layer at the top</h4>" + charts.bar_list(last, charts.TRAIN)  # fmt: skip
        body.append(_part("Gradient norms", GRADIENT_HINT, f"<div class=charts>{chart.html}<div>{table}</div></div>"))  # fmt: skip
    elif recorded.get("gradients_recorded") is False:
        body.append("<p class=note>Gradient norms are recorded on the TensorFlow backend only.</p>")
    body += _pictures(folder, recorded)
    rows = recorded.get("probe_rows")
    if recorded.get("measured_in") == "training steps":
        note = "Weights after each epoch; dead units and gradient norms over every training step of each epoch."  # fmt: skip
    elif isinstance(rows, int):  # another backend, or a run recorded before 2026-12-05
        note = f"Measured after each epoch on the same {number(rows)} training examples."
    else:
        note = ""
    return section("inside", "Inside the model", Markup("".join(body)), note)


def _part(title: str, hint: str, body: str) -> str:
    return f'<h3>{text(title)}</h3><p class="hint">{text(hint)}</p>{body}'


def _numbers(values: Any, count: int) -> list[float | None]:
    found = [float(v) if isinstance(v, int | float) else None for v in (values or [])]
    return (found + [None] * count)[:count]


def _ridges(name: str, histogram: dict[str, Any], epochs: list[int]) -> str:
    """Small histograms stacked by epoch, on one shared weight axis."""
    counts, lows, highs = histogram.get("counts") or [], histogram.get("low") or [], histogram.get("high") or []  # fmt: skip
    usable = min(len(counts), len(lows), len(highs), len(epochs))
    if usable == 0:
        return ""
    picks = sorted(
        {round(i * (usable - 1) / max(RIDGES - 1, 1)) for i in range(min(RIDGES, usable))}
    )
    low = min(float(lows[i]) for i in picks)
    high = max(float(highs[i]) for i in picks)
    span = (high - low) or 1.0
    width, left, row = 420, 70, 34
    parts = [f'<text class="title" x="{left}" y="14">{text(name)} weights</text>']
    for place, index in enumerate(picks):
        base = 30 + row * (place + 1)
        bins = [c for c in counts[index] if isinstance(c, int | float)]
        if not bins:
            continue
        peak = max(bins) or 1
        step = (float(highs[index]) - float(lows[index])) / len(bins)
        points = [f"{left + (float(lows[index]) - low) / span * (width - left - 10):.1f},{base}"]
        for k, count in enumerate(bins):
            x0 = left + (float(lows[index]) + k * step - low) / span * (width - left - 10)
            x1 = left + (float(lows[index]) + (k + 1) * step - low) / span * (width - left - 10)
            y = base - count / peak * (row + 6)
            points += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
        points.append(
            f"{left + (float(highs[index]) - low) / span * (width - left - 10):.1f},{base}"
        )
        shade = charts.PALETTE[0]
        parts.append(f'<polygon points="{" ".join(points)}" fill="{shade}" fill-opacity="0.35" stroke="{shade}"/>')  # fmt: skip
        parts.append(f'<text x="{left - 6}" y="{base - 2}" text-anchor="end">epoch {epochs[index]}</text>')  # fmt: skip
    bottom = 30 + row * len(picks) + 14
    parts.append(f'<text x="{left}" y="{bottom}">{_tick(low)}</text>')
    parts.append(f'<text x="{width - 10}" y="{bottom}" text-anchor="end">{_tick(high)}</text>')
    return f'<figure><svg class="ridges" viewBox="0 0 {width} {bottom + 4}" width="{width}" height="{bottom + 4}" role="img" aria-label="{text(name)} weights">{"".join(parts)}</svg></figure>'  # fmt: skip


def _tick(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "?"


def _pictures(folder: Path, recorded: dict[str, Any]) -> list[str]:
    path = folder / INTERNALS_PICTURES
    if not path.is_file():
        return []
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: np.asarray(archive[key]) for key in archive.files}
    except (OSError, ValueError):
        return []
    parts = []
    filters = arrays.get("filters")
    if filters is not None and filters.ndim == 4:
        images = []
        for index in range(filters.shape[3]):
            kernel = filters[:, :, :, index]
            picture = kernel if kernel.shape[2] == 3 else kernel.mean(axis=2)
            images.append(f'<img class="filter" alt="filter {index}" title="filter {index}" src="{charts.png_data_uri(picture)}">')  # fmt: skip
        title = f"First-layer filters ({recorded.get('filters_of')})"
        parts.append(_part(title, FILTERS_HINT, f"<div class=thumbs>{''.join(images)}</div>"))
    layers = [str(n) for n in recorded.get("feature_maps_of") or []]
    if "picture" in arrays and layers:
        rows = [f'<div class=thumbs><img class="map" alt="the test image" src="{charts.png_data_uri(arrays["picture"])}"><span>the test image</span></div>']  # fmt: skip
        for index, name in enumerate(layers):
            maps = arrays.get(f"maps_{index}")
            if maps is None or maps.ndim != 3:
                continue
            maps_html = "".join(f'<img class="map" alt="{text(name)} channel {c}" src="{charts.png_data_uri(maps[:, :, c])}">' for c in range(maps.shape[2]))  # fmt: skip
            rows.append(f"<div class=thumbs><span>{text(name)}</span>{maps_html}</div>")
        parts.append(_part("Feature maps", MAPS_HINT, "".join(rows)))
    return parts
