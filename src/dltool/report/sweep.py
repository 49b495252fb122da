"""A sweep's report: the trials table, parameters against the metric, the gap, the best trial.

Reads the sweep folder's files only (sweep.yaml, trials.csv, best.json and the trials' own
run folders for their curves), like the run report.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from dltool.errors import InputError
from dltool.metrics import higher_is_better
from dltool.report import charts
from dltool.report.charts import Series
from dltool.report.html import Markup, number, page, section, table, text
from dltool.report.run import NOT_PLOTTED, read_run_files
from dltool.rundir import HISTORY, RUN_JSON, json_object, write_text
from dltool.yamlio import YamlProblem, read_yaml_mapping

CURVES_OF = 12  # trials whose curves are overlaid: the best ones, or the chart is a tangle

LONG_VALUE = 16  # characters: a longer parameter value is shown as #1, #2, ... on the axes


def is_sweep_folder(folder: Path) -> bool:
    from dltool.sweep.folder import SWEEP_FILE

    return (folder / SWEEP_FILE).is_file()


class SweepFiles:
    """What a sweep folder holds, as far as it can be read."""

    def __init__(self, folder: Path) -> None:
        from dltool.sweep.folder import BEST, RUNS, SWEEP_FILE, TRIAL_COLUMNS, TRIALS

        self.path, self.runs = folder, folder / RUNS
        try:
            self.spec = read_yaml_mapping(folder / SWEEP_FILE)
        except YamlProblem as error:
            raise InputError(f"{folder / SWEEP_FILE}: {error}") from error
        self.best, _ = json_object(folder / BEST)
        self.rows: list[dict[str, str]] = []
        if (folder / TRIALS).is_file():
            with open(folder / TRIALS, encoding="utf-8", errors="replace", newline="") as handle:
                self.rows = list(csv.DictReader(handle))
        self.header = list(self.rows[0]) if self.rows else []
        self.metric = str(self.spec.get("metric", "validation.loss"))
        mode = self.spec.get("mode", "auto")
        self.maximize = mode == "max" or (mode == "auto" and higher_is_better(self.metric))
        metric_like = {c for c in self.header if c.split(".", 1)[0] in ("train", "validation", "test", "gap")}  # fmt: skip
        self.params = [c for c in self.header if c not in TRIAL_COLUMNS and c not in metric_like]
        self.shown_metrics = [
            c for c in self.header if c not in TRIAL_COLUMNS and c not in self.params
        ]

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.path.name)

    def value(self, row: dict[str, str], column: str) -> float | None:
        try:
            found = float(row.get(column) or "nan")
        except ValueError:
            return None
        return found if math.isfinite(found) else None

    def repeats(self) -> dict[str, int]:
        """Each trial's repeat number (1, 2, ...) among the trials with the same parameters."""
        seen: dict[tuple[str, ...], int] = {}
        numbers = {}
        for row in self.rows:
            key = tuple(row.get(p, "") for p in self.params)
            seen[key] = seen.get(key, 0) + 1
            numbers[row["trial"]] = seen[key]
        return numbers


def write_sweep_report(folder: Path) -> Path:
    """Write ``SWEEP/report.html``; returns its path.

    Raises:
        InputError: not a sweep folder, or its sweep.yaml is unreadable.
    """
    from dltool.sweep.folder import REPORT

    files = SweepFiles(folder)
    target = folder / REPORT
    write_text(target, sweep_page(files))
    return target


def sweep_page(files: SweepFiles) -> str:
    data: dict[str, Any] = {"charts": {}}
    parts = [
        ("best", "Best trial", _best(files)),
        ("trials", "Trials", _trials(files)),
        ("parallel", "Parameters and the metric", _parallel(files)),
        ("params", "The metric against each parameter", _scatter(files, data)),
        ("gap", "Train/validation gap", _gap(files)),
        ("curves", "Learning curves", _curves(files, data)),
    ]
    shown = [(anchor, title, body) for anchor, title, body in parts if body]
    direction = "higher is better" if files.maximize else "lower is better"
    subtitle = f"{files.path.name} \u00b7 {len(files.rows)} trials \u00b7 {files.metric} ({direction})"  # fmt: skip
    return page(f"Sweep {files.name}", subtitle, shown, data)


def _best(files: SweepFiles) -> str:
    best = files.best
    if not best:
        return section("best", "Best trial", Markup("<p>No completed trial has the metric yet.</p>"))  # fmt: skip
    recorded = best.get("values")
    values: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    rows = [[key, json.dumps(value) if not isinstance(value, str) else value] for key, value in values.items()]  # fmt: skip
    run = Path(str(best.get("run") or "")).name
    body = (
        f"<div class=tiles><div class=tile><span>trial</span><b>{number(best.get('trial'))}</b></div>"
        f"<div class=tile><span>{text(best.get('metric'))}</span><b>{number(best.get('value'))}</b></div>"
        f"<div class=tile><span>seed</span><b>{number(best.get('seed'))}</b></div></div>"
        + table(["parameter", "value"], rows)
    )
    if run and (files.runs / run / RUN_JSON).is_file():
        body += f'<p>Its run: <a href="runs/{text(run)}/report.html">{text(run)}</a></p>'
    return section("best", "Best trial", Markup(body))


def _trials(files: SweepFiles) -> str:
    if not files.rows:
        return section("trials", "Trials", Markup("<p>No trial has finished yet.</p>"))
    best = str(files.best.get("trial", "")) if files.best else ""
    repeats = files.repeats()
    axes = {p: _Axis([r.get(p, "") for r in files.rows]) for p in files.params}
    shown_metrics = files.shown_metrics
    header = ["trial", *files.params, "repeat", "status", *shown_metrics, "seconds"]
    rows, classes = [], []
    for row in files.rows:
        status = row.get("status", "")
        if status not in ("completed",) and row.get("error"):
            status = f"{status}: {row['error']}"
        rows.append(
            [
                int(row["trial"]),
                *(_param_cell(axes[p], row.get(p, "")) for p in files.params),
                repeats.get(row["trial"], 1),
                status,
                *(files.value(row, c) for c in shown_metrics),
                files.value(row, "duration_s"),
            ]
        )
        classes.append("best" if row["trial"] == best else row.get("status", ""))
    numeric = [True, *(False for _ in files.params), True, False, *(True for _ in shown_metrics), True]  # fmt: skip
    body = (
        "<div class=scroll>"
        + table(header, rows, sortable=True, numeric=numeric, row_classes=classes)
        + "</div>"
    )
    body += "".join(axis.legend(p) for p, axis in axes.items())  # fmt: skip
    note = "Click a column to sort. The best trial is green; a repeat is the same parameters with the next seed; pruned or failed trials say so in status."  # fmt: skip
    return section("trials", "Trials", Markup(body), note)


def _param_cell(axis: _Axis, raw: str) -> Any:
    """A parameter's value in the trials table: a long one as its #N (the whole value on hover)."""
    if not axis.numeric and axis.long:
        label = axis.labels[axis.categories.index(raw)]
        return Markup(f'<span title="{text(raw)}">{text(label)}</span>')
    return _param_value(raw)


def _param_value(raw: str) -> Any:
    try:
        return float(raw) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        return raw


def _completed(files: SweepFiles) -> list[dict[str, str]]:
    return [
        r
        for r in files.rows
        if r.get("status") == "completed" and files.value(r, files.metric) is not None
    ]


class _Axis:
    """A parameter's values placed on 0..1: numbers linearly (log when they span 100x), else in order."""

    def __init__(self, values: list[str]) -> None:
        numbers = [_float(v) for v in values]
        self.numeric = all(n is not None for n in numbers)
        if self.numeric:
            finite = [n for n in numbers if n is not None]
            low, high = min(finite), max(finite)
            self.log = low > 0 and high / low >= 100
            self.low, self.high = (math.log10(low), math.log10(high)) if self.log else (low, high)
            self.labels = [_short(low), _short(high)]
        else:
            self.categories = list(dict.fromkeys(values))
            # a long value (a list of layers, an optimizer mapping) is named by its order
            self.long = any(len(c) > LONG_VALUE for c in self.categories)
            self.labels = [f"#{i + 1}" if self.long else c for i, c in enumerate(self.categories)]

    def legend(self, name: str) -> str:
        """What each ``#N`` of a parameter with long values stands for ("" when none)."""
        if self.numeric or not self.long:
            return ""
        rows = [[label, value if len(value) <= 600 else value[:599] + "\u2026"] for label, value in zip(self.labels, self.categories, strict=True)]  # fmt: skip
        return f"<h4>{text(name)}</h4>" + table(["", "value"], rows, table_class="values")

    def place(self, value: str) -> float:
        if self.numeric:
            number_value = _float(value) or 0.0
            position = math.log10(number_value) if self.log else number_value
            return 0.5 if self.high == self.low else (position - self.low) / (self.high - self.low)
        index = self.categories.index(value)
        return 0.5 if len(self.categories) == 1 else index / (len(self.categories) - 1)


def _float(value: str) -> float | None:
    try:
        found = float(value)
    except ValueError:
        return None
    return found if math.isfinite(found) else None


def _short(value: float) -> str:
    return f"{value:.3g}"


def _ramp(share: float) -> str:
    """Blue (worst) to green (best): the colour of a trial's line."""
    red, green, blue = (37 + (22 - 37) * share, 99 + (163 - 99) * share, 235 + (74 - 235) * share)
    return f"rgb({red:.0f},{green:.0f},{blue:.0f})"


def _parallel(files: SweepFiles) -> str:
    done = _completed(files)
    if not done or not files.params:
        return ""
    names = [*files.params, files.metric]
    axes = [_Axis([r.get(p, "") for r in done]) for p in files.params]
    scores = [files.value(r, files.metric) or 0.0 for r in done]
    low, high = min(scores), max(scores)
    metric_axis = _Axis([repr(s) for s in scores])
    gap, left, top, height = 190, 70, 30, 220
    width = left * 2 + gap * (len(names) - 1)
    parts = []
    for index, name in enumerate(names):
        x = left + gap * index
        labels = axes[index].labels if index < len(axes) else [_short(low), _short(high)]
        parts.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{top + height}" stroke="#9aa4b2"/>')
        short = name.rsplit(".", 1)[-1]  # learning_rate, as trial labels say it
        parts.append(f'<text x="{x}" y="{top - 12}" text-anchor="middle" class="title">{text(_tail(short))}<title>{text(name)}</title></text>')  # fmt: skip
        if index < len(axes) and not axes[index].numeric:
            for label, value in zip(labels, axes[index].categories, strict=True):
                y = top + height - axes[index].place(value) * height
                parts.append(f'<text x="{x + 4}" y="{y + 4:.1f}">{text(_tail(label, 16))}</text>')
        else:
            parts.append(f'<text x="{x + 4}" y="{top + height + 14}">{text(labels[0])}</text>')
            parts.append(f'<text x="{x + 4}" y="{top - 2}">{text(labels[-1])}</text>')
    best = str(files.best.get("trial", "")) if files.best else ""
    order = sorted(range(len(done)), key=lambda i: done[i]["trial"] == best)  # the best on top
    for i in order:
        row, score = done[i], scores[i]
        share = 0.5 if high == low else (score - low) / (high - low)
        share = share if files.maximize else 1 - share
        ys = [top + height - axis.place(row.get(p, "")) * height for axis, p in zip(axes, files.params, strict=True)]  # fmt: skip
        ys.append(top + height - metric_axis.place(repr(score)) * height)
        points = " ".join(f"{left + gap * k},{y:.1f}" for k, y in enumerate(ys))
        thick = 3.5 if row["trial"] == best else 1.6
        parts.append(
            f'<polyline class="series" fill="none" stroke="{_ramp(share)}" stroke-width="{thick}" points="{points}">'
            f"<title>trial {text(row['trial'])}: {text(files.metric)} {number(score)}</title></polyline>"
        )
    svg = f'<svg class="parallel" viewBox="0 0 {width} {top + height + 24}" width="{width}" height="{top + height + 24}" role="img" aria-label="parallel coordinates">{"".join(parts)}</svg>'  # fmt: skip
    hint = "Each line is a trial, from its parameter values to its metric; green lines did best (the thick one is the best trial). Lines that meet at one value of a parameter whatever the others say that parameter matters; #1, #2 name long values (see the trials table)."  # fmt: skip
    return section("parallel", "Parameters and the metric", Markup(svg), hint)


def _tail(name: str, keep: int = 22) -> str:
    return name if len(name) <= keep else "\u2026" + name[-(keep - 1) :]


def _scatter(files: SweepFiles, data: dict[str, Any]) -> str:
    done = _completed(files)
    if not done or not files.params:
        return ""
    figures = []
    for index, param in enumerate(files.params):
        axis = _Axis([r.get(param, "") for r in done])
        ordered = sorted(done, key=lambda r: axis.place(r.get(param, "")))
        positions = [axis.place(r.get(param, "")) for r in ordered]
        values = [files.value(r, files.metric) for r in ordered]
        labels = [
            f"trial {r['trial']}: {_tail(param, 30)}={_tail(r.get(param, ''), 60)}" for r in ordered
        ]
        chart = charts.scatter(f"param-{index}", f"{files.metric} against {_tail(param, 40)}", positions, values, labels, axis.labels)  # fmt: skip
        data["charts"][f"param-{index}"] = chart.data
        figures.append(chart.html)
    hint = "One dot per completed trial; hover for the trial and its value. A slope means the parameter moves the metric; a flat cloud means it hardly matters here."  # fmt: skip
    return section("params", "The metric against each parameter", Markup(f"<div class=charts>{''.join(figures)}</div>"), hint)  # fmt: skip


def _gap(files: SweepFiles) -> str:
    column = "gap." + files.metric.split(".", 1)[-1]
    if column not in files.header:
        return ""
    values = [(f"trial {r['trial']}", files.value(r, column)) for r in files.rows if r.get("status") == "completed"]  # fmt: skip
    if not values:
        return ""
    hint = f"{column}: how much better the model does on the data it trained on than on validation data (orange; blue: validation did better). A big gap is overfitting; regularization shrinks it."  # fmt: skip
    return section("gap", "Train/validation gap", Markup(charts.bar_list(values, charts.VALIDATION)), hint)  # fmt: skip


def _curves(files: SweepFiles, data: dict[str, Any]) -> str:
    done = sorted(_completed(files), key=lambda r: files.value(r, files.metric) or 0.0, reverse=files.maximize)[:CURVES_OF]  # fmt: skip
    runs = [(r, files.runs / r.get("run", "")) for r in done if r.get("run") and (files.runs / r["run"] / HISTORY).is_file()]  # fmt: skip
    if not runs:
        return ""
    histories = [(row, read_run_files(folder).history) for row, folder in runs]
    keys = [k for k in histories[0][1][0] if not k.startswith("val_") and k not in NOT_PLOTTED] if histories[0][1] else []  # fmt: skip
    longest = max(len(h) for _, h in histories)
    epochs = list(range(1, longest + 1))
    figures = []
    for key in keys:
        series = []
        for number_in_order, (row, history) in enumerate(histories):
            column = f"val_{key}" if history and f"val_{key}" in history[0] else key
            values = [h.get(column) for h in history] + [None] * (longest - len(history))
            color = charts.PALETTE[number_in_order % len(charts.PALETTE)]
            series.append(Series(f"trial {row['trial']}", values, color))
        chart = charts.line_chart(f"sweep-{key}", f"{key.replace('_', ' ')} (validation)", epochs, series)  # fmt: skip
        data["charts"][f"sweep-{key}"] = chart.data
        figures.append(chart.html)
    hint = f"The validation curves of the {len(runs)} best trials by {files.metric} (training curves where a trial had no validation data)."  # fmt: skip
    return section("curves", "Learning curves", Markup(f"<div class=charts>{''.join(figures)}</div>"), hint)  # fmt: skip
