"""A comparison of runs on one page: the config keys that differ, metrics, curves overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltool.report import charts
from dltool.report.charts import Series
from dltool.report.html import Markup, page, section, table
from dltool.report.run import NOT_PLOTTED, RunFiles, _yaml_text, read_run_files
from dltool.rundir import write_text
from dltool.runs import compare, read_run


def comparison_page(folders: list[Path]) -> str:
    """The comparison page of two or more run folders.

    Raises:
        InputError: a folder is not a run folder.
    """
    runs = [read_run(folder) for folder in folders]
    files = [read_run_files(folder) for folder in folders]
    result = compare(runs)
    names = result["runs"]
    data: dict[str, Any] = {"charts": {}}
    differences = result["config_differences"]
    if differences:
        rows = [[key, *(_yaml_text(v) for v in values)] for key, values in differences.items()]
        body = table(["key", *names], rows)
    else:
        body = "<p>The runs' configs are the same (apart from their names).</p>"
    data_differences = result.get("data_differences") or {}
    if data_differences:  # SHA-256 of each split or data file (first 12 hex digits)
        rows = [[key, *(v or "" for v in values)] for key, values in data_differences.items()]
        body += "<h3>Data that differs (SHA-256)</h3>" + table(["data", *names], rows)
    config_part = section("differences", "Config differences", Markup(body), "Only the keys whose values differ between the runs.")  # fmt: skip
    metric_rows = [[key, *values] for key, values in result["metrics"].items()]
    metrics_part = section(
        "metrics",
        "Metrics",
        Markup(table(["metric", *names], metric_rows, numeric=[False, *([True] * len(names))])),
    )
    curves_part = section("curves", "Learning curves", Markup(_overlaid(files, names, data)), "Solid: validation; dashed: training. Hover for each run's value at an epoch.")  # fmt: skip
    parts = [
        ("differences", "Config differences", config_part),
        ("metrics", "Metrics", metrics_part),
        ("curves", "Learning curves", curves_part),
    ]
    return page(f"Comparison of {len(runs)} runs", ", ".join(names), parts, data)


def _overlaid(files: list[RunFiles], names: list[str], data: dict[str, Any]) -> str:
    keys = list(
        dict.fromkeys(
            k
            for f in files
            for k in (f.history[0] if f.history else {})
            if not k.startswith("val_") and k not in NOT_PLOTTED
        )
    )
    if not keys:
        return "<p class=note>None of the runs recorded an epoch.</p>"
    longest = max(files, key=lambda f: len(f.history))
    epochs = [int(r.get("epoch") or i + 1) for i, r in enumerate(longest.history)]
    figures = []
    for key in keys:
        series = []
        for number, (run, name) in enumerate(zip(files, names, strict=True)):
            color = charts.PALETTE[number % len(charts.PALETTE)]
            padded = [*(r.get(key) for r in run.history), *([None] * (len(epochs) - len(run.history)))]  # fmt: skip
            if run.history and f"val_{key}" in run.history[0]:
                validation = [*(r.get(f"val_{key}") for r in run.history), *([None] * (len(epochs) - len(run.history)))]  # fmt: skip
                series.append(Series(f"{name} validation", validation, color))
                series.append(Series(f"{name} train", padded, color, dashed=True))
            else:
                series.append(Series(f"{name} train", padded, color))
        chart = charts.line_chart(f"compare-{key}", key.replace("_", " "), epochs, series)
        data["charts"][f"compare-{key}"] = chart.data
        figures.append(chart.html)
    return f"<div class=charts>{''.join(figures)}</div>"


def write_comparison(folders: list[Path], target: Path) -> Path:
    """Write the comparison page of ``folders`` to ``target``; returns ``target``."""
    write_text(target, comparison_page(folders))
    return target
