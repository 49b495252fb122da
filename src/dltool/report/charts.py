"""Charts as inline SVG, drawn here in Python; the page's script adds the hover values.

Why SVG written by hand and not plotly or Vega-Lite: a run's report is about 100 KB
instead of 4 MB of embedded JavaScript, it is written in milliseconds without importing
a plotting library, and every value that reaches the page goes through one escaping
function. What it gives up (zoom, pan) a learner rarely needs for a few hundred epochs.

Each chart returns its SVG and the data the script needs for hovering: the x values,
their pixel positions and each series' values.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dltool.report.html import number, text

WIDTH, HEIGHT = 420, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 38
MARKERS_UP_TO = 30  # points: more than this many get a line without a dot on each
MAX_POINTS = 1000  # points per line: a longer history is thinned to this many
TRAIN, VALIDATION = "#2563eb", "#ea580c"
PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#4b5563")  # fmt: skip


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    color: str
    dashed: bool = False


@dataclass
class Mark:
    """A vertical line at ``x`` with a label: the best epoch, a resume."""

    x: float
    label: str
    color: str = "#16a34a"


@dataclass
class Chart:
    html: str  # a <figure>: the SVG and its legend
    data: dict[str, Any] = field(default_factory=dict)


def nice_step(span: float, count: int) -> float:
    """A step of 1, 2 or 5 times a power of ten that cuts ``span`` into about ``count`` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def integer_ticks(low: float, high: float, count: int = 8) -> list[int]:
    """Whole-number ticks (epochs are never 2.5) from ``low`` to ``high``."""
    step = max(1, int(nice_step(high - low, count)))
    first = int(math.ceil(low / step) * step)
    return list(range(first, int(high) + 1, step)) or [int(low)]


def value_ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = nice_step(high - low, count)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _range(values: Sequence[float]) -> tuple[float, float]:
    finite_values = [v for v in values if v is not None and math.isfinite(v)]
    if not finite_values:
        return 0.0, 1.0
    low, high = min(finite_values), max(finite_values)
    if low == high:
        pad = abs(low) * 0.05 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.06
    return low - pad, high + pad


def _frame(title: str, xlabel: str, x_ticks: list[tuple[float, str]], y_ticks: list[tuple[float, str]]) -> list[str]:  # fmt: skip
    """Title, grid, axes and tick labels; positions already in pixels."""
    parts = [f'<text class="title" x="{LEFT}" y="16">{text(title)}</text>', '<g class="grid">']
    parts += [f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>' for y, _ in y_ticks]  # fmt: skip
    parts.append('</g><g class="axis">')
    bottom = HEIGHT - BOTTOM
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>')
    for x, label in x_ticks:
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{text(label)}</text>')  # fmt: skip
    for y, label in y_ticks:
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text(label)}</text>')  # fmt: skip
    parts.append("</g>")
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">{text(xlabel)}</text>')  # fmt: skip
    return parts


def legend(series: Sequence[Series]) -> str:
    """The series' names under a chart, as HTML (it wraps, however many runs are overlaid)."""
    items = []
    for item in series:
        dash = ' stroke-dasharray="4 2"' if item.dashed else ""
        swatch = f'<svg width="18" height="8"><line x1="0" x2="18" y1="4" y2="4" stroke="{item.color}" stroke-width="2"{dash}/></svg>'  # fmt: skip
        items.append(f"<span class=key>{swatch} {text(item.name)}</span>")
    return f"<figcaption>{''.join(items)}</figcaption>"


def line_chart(chart_id: str, title: str, x: Sequence[int], series: Sequence[Series], marks: Sequence[Mark] = (), xlabel: str = "epoch", y_range: tuple[float, float] | None = None) -> Chart:  # fmt: skip
    """One quantity over epochs: a line per series, vertical lines at ``marks``.

    Past :data:`MAX_POINTS` epochs every k-th epoch is drawn (and the last), so that a run of
    100,000 epochs still makes a page of a few hundred kB.
    """
    if len(x) > MAX_POINTS:
        keep = sorted({*range(0, len(x), math.ceil(len(x) / MAX_POINTS)), len(x) - 1})
        x = [x[i] for i in keep]
        series = [Series(s.name, [s.values[i] for i in keep], s.color, s.dashed) for s in series]
    x_low, x_high = (float(min(x)), float(max(x))) if x else (0.0, 1.0)
    if x_low == x_high:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = y_range or _range([v for s in series for v in s.values if v is not None])

    def px(value: float) -> float:
        return LEFT + (value - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def py(value: float) -> float:
        return HEIGHT - BOTTOM - (value - y_low) / (y_high - y_low) * (HEIGHT - TOP - BOTTOM)

    x_ticks = [(px(t), str(t)) for t in integer_ticks(x_low, x_high)]
    y_ticks = [(py(t), _tick_label(t)) for t in value_ticks(y_low, y_high)]
    parts = _frame(title, xlabel, x_ticks, y_ticks)
    for mark in marks:
        where = px(mark.x)
        parts.append(f'<line x1="{where:.1f}" x2="{where:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="{mark.color}" stroke-dasharray="4 3" class="mark"/>')  # fmt: skip
        side = f'x="{where - 3:.1f}" text-anchor="end"' if where > WIDTH * 0.6 else f'x="{where + 3:.1f}"'  # fmt: skip
        parts.append(f'<text {side} y="{HEIGHT - BOTTOM - 6}" style="fill:{mark.color}">{text(mark.label)}</text>')  # fmt: skip
    for item in series:
        dash = ' stroke-dasharray="5 3"' if item.dashed else ""
        for segment in _segments(x, item.values):
            points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in segment)
            parts.append(f'<polyline class="series" fill="none" stroke="{item.color}" stroke-width="1.8"{dash} points="{points}"/>')  # fmt: skip
        if len(x) <= MARKERS_UP_TO:
            parts += [
                f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.6" fill="{item.color}"/>'
                for a, b in zip(x, item.values, strict=True)
                if b is not None and math.isfinite(b)
            ]
    parts.append(f'<line class="guide" x1="0" x2="0" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
    figure = (
        f'<figure><svg class="chart" data-chart="{text(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{text(title)}">'
        + "".join(parts)
        + "</svg>"
        + legend(series)
        + "</figure>"
    )
    data = {
        "x": list(x),
        "px": [round(px(v), 1) for v in x],
        "xlabel": xlabel,
        "series": [{"name": s.name, "values": list(s.values)} for s in series],
    }
    return Chart(figure, data)


def _segments(x: Sequence[float], values: Sequence[float | None]) -> list[list[tuple[float, float]]]:  # fmt: skip
    """Runs of finite points: a NaN epoch breaks the line instead of bending it to zero."""
    segments: list[list[tuple[float, float]]] = [[]]
    for a, b in zip(x, values, strict=True):
        if b is None or not math.isfinite(b):
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((a, b))
    return [s for s in segments if s]


def _tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2g}"
    return f"{value:.4g}"


def histogram(chart_id: str, title: str, edges: Sequence[float], groups: Sequence[Series], xlabel: str) -> Chart:  # fmt: skip
    """Counts per bin for each group, drawn as translucent bars over each other."""
    x_low, x_high = edges[0], edges[-1]
    peak = max((v or 0 for g in groups for v in g.values), default=0) or 1

    def px(value: float) -> float:
        return LEFT + (value - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def py(value: float) -> float:
        return HEIGHT - BOTTOM - value / (peak * 1.08) * (HEIGHT - TOP - BOTTOM)

    x_ticks = [(px(t), _tick_label(t)) for t in value_ticks(x_low, x_high)]
    y_ticks = [(py(t), _tick_label(t)) for t in value_ticks(0, peak * 1.08) if t == int(t)]
    parts = _frame(title, xlabel, x_ticks, y_ticks)
    for group in groups:
        for index, count in enumerate(group.values):
            if not count:
                continue
            left, right = px(edges[index]), px(edges[index + 1])
            top = py(count)
            parts.append(f'<rect class="bar" x="{left + 0.5:.1f}" y="{top:.1f}" width="{max(right - left - 1, 1):.1f}" height="{HEIGHT - BOTTOM - top:.1f}" fill="{group.color}" fill-opacity="0.45" stroke="{group.color}"/>')  # fmt: skip
    parts.append(f'<line class="guide" x1="0" x2="0" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
    centers = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
    figure = (
        f'<figure><svg class="chart" data-chart="{text(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{text(title)}">'
        + "".join(parts)
        + "</svg>"
        + legend(groups)
        + "</figure>"
    )
    data = {
        "x": [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(centers))],
        "px": [round(px(c), 1) for c in centers],
        "xlabel": xlabel,
        "series": [{"name": g.name, "values": list(g.values)} for g in groups],
    }
    return Chart(figure, data)


def scatter(chart_id: str, title: str, positions: Sequence[float], values: Sequence[float | None], labels: Sequence[str], ticks: Sequence[str]) -> Chart:  # fmt: skip
    """Dots at ``positions`` (0..1 across) and ``values``; ``ticks`` spread evenly below."""
    y_low, y_high = _range([v for v in values if v is not None])

    def px(share: float) -> float:
        return LEFT + 10 + share * (WIDTH - LEFT - RIGHT - 20)

    def py(value: float) -> float:
        return HEIGHT - BOTTOM - (value - y_low) / (y_high - y_low) * (HEIGHT - TOP - BOTTOM)

    spread = [0.5] if len(ticks) == 1 else [i / (len(ticks) - 1) for i in range(len(ticks))]
    x_ticks = [(px(share), label if len(label) <= 14 else label[:13] + "\u2026") for share, label in zip(spread, ticks, strict=True)]  # fmt: skip
    y_ticks = [(py(t), _tick_label(t)) for t in value_ticks(y_low, y_high)]
    parts = _frame(title, "", x_ticks, y_ticks)
    parts += [
        f'<circle class="dot" cx="{px(share):.1f}" cy="{py(value):.1f}" r="4" fill="{TRAIN}" fill-opacity="0.7"/>'
        for share, value in zip(positions, values, strict=True)
        if value is not None
    ]
    parts.append(f'<line class="guide" x1="0" x2="0" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
    figure = (
        f'<figure><svg class="chart" data-chart="{text(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{text(title)}">'
        + "".join(parts)
        + "</svg></figure>"
    )
    data = {
        "x": list(labels),
        "px": [round(px(share), 1) for share in positions],
        "xlabel": "",
        "series": [{"name": "metric", "values": list(values)}],
    }
    return Chart(figure, data)


def bar_list(values: Sequence[tuple[str, float | None]], color: str = VALIDATION) -> str:
    """Bars from a zero line in the middle, with their numbers, as an HTML table: positive
    values right in ``color``, negative ones left in blue (a trial's gap, a layer's norm)."""
    finite_values = [abs(v) for _, v in values if v is not None and math.isfinite(v)]
    peak = max(finite_values, default=0) or 1
    half = 110
    rows = []
    for label, value in values:
        bar = ""
        if value is not None and math.isfinite(value):
            length = abs(value) / peak * half
            start = half if value >= 0 else half - length
            fill = color if value >= 0 else TRAIN
            bar = f'<rect x="{start:.1f}" y="1" height="10" width="{length:.1f}" fill="{fill}"/>'
        rows.append(
            f"<tr><td>{text(label)}</td><td class=num>{number(value)}</td>"
            f'<td><svg width="{2 * half}" height="12">{bar}<line x1="{half}" x2="{half}" y1="0" y2="12" stroke="#9aa4b2"/></svg></td></tr>'
        )
    return f"<table>{''.join(rows)}</table>"


# ------------------------------------------------------------------- pictures


def png_data_uri(image: np.ndarray) -> str:
    """An image array (h, w) or (h, w, 1|3|4) of any range as a ``data:`` PNG, stretched to 0..255."""
    array = np.asarray(image, dtype="float64")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        array = array.mean(axis=2)  # e.g. a feature map's channels
    array = np.nan_to_num(array)
    low, high = float(array.min()), float(array.max())
    scaled = np.zeros_like(array) if high == low else (array - low) / (high - low) * 255
    pixels = scaled.round().astype("uint8")
    return "data:image/png;base64," + base64.b64encode(_png(pixels)).decode("ascii")


def _png(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG (grey, RGB or RGBA) from a uint8 array: zlib alone, no imaging library."""
    height, width = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else {3: 2, 4: 6}[pixels.shape[2]]
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)  # fmt: skip

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")  # fmt: skip
