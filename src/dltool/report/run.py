"""One run's report: what its folder holds, on one page. Reads files only: no TensorFlow.

Every section works from the files a run folder has; a file that is missing (an older
run, a failed one) leaves its section out or says what is missing, never an error.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltool.evaluation import worst_mistakes
from dltool.metrics import SPLITS, resolve_mode
from dltool.report import charts
from dltool.report.charts import Mark, Series
from dltool.report.html import Markup, number, page, section, table, text
from dltool.report.internals import inside_section
from dltool.rundir import (
    CONFIG,
    HISTORY,
    METRICS,
    MISTAKES,
    PREDICTIONS,
    REPORT,
    RUN_JSON,
    SUMMARY,
    RunDir,
    json_object,
    write_text,
)
from dltool.runs import flatten
from dltool.yamlio import YamlProblem, read_yaml_mapping

MAX_CSV_BYTES = 200_000_000  # predictions.csv of a few million test rows; beyond that, not ours
MAX_PREDICTION_ROWS = 100_000  # read from predictions.csv (plus the worst mistakes' rows)
NOT_PLOTTED = ("epoch", "learning_rate", "duration_s")


@dataclass
class RunFiles:
    """What a report reads from a run folder; each part empty when its file is missing."""

    path: Path
    info: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, float | None]]
    metrics: dict[str, Any]
    predictions: list[dict[str, str]]
    summary: str
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)

    @property
    def task(self) -> str:
        return str(self.info.get("task") or "")


def read_run_files(folder: Path) -> RunFiles:
    """A run folder's files, as far as they can be read.

    Raises:
        InputError: ``folder`` is not a run folder.
    """
    run = RunDir.open(folder)
    problems = []
    info, refused = json_object(run.path / RUN_JSON)
    if refused:
        problems.append(f"{RUN_JSON}: {refused}")
    metrics, refused = json_object(run.path / METRICS)
    if refused:
        problems.append(f"{METRICS}: {refused}")
    try:
        config = read_yaml_mapping(run.path / CONFIG) if (run.path / CONFIG).exists() else {}
    except YamlProblem as error:
        config = {}
        problems.append(f"{CONFIG}: {error}")
    history = [
        {k: _float(v) for k, v in row.items() if k is not None}
        for row in _csv_rows(run.path / HISTORY, problems)
    ]
    summary = ""
    if (run.path / SUMMARY).is_file():
        summary = (run.path / SUMMARY).read_text(encoding="utf-8", errors="replace")[:100_000]
    predictions = _prediction_rows(run.path, problems)
    return RunFiles(run.path, info, config, history, metrics, predictions, summary, problems)


def _csv_rows(path: Path, problems: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_CSV_BYTES:
        problems.append(f"{path.name}: larger than {MAX_CSV_BYTES:,} bytes; left out")
        return []
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        return list(csv.DictReader(handle))


def _prediction_rows(folder: Path, problems: list[str]) -> list[dict[str, str]]:
    """predictions.csv's rows, at most MAX_PREDICTION_ROWS of them plus the worst mistakes'
    (mistakes.npz): the test split is in random order, so the first rows are a fair sample
    for the histogram, and a million rows as dicts would take about a gigabyte."""
    path = folder / PREDICTIONS
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_CSV_BYTES:
        problems.append(f"{path.name}: larger than {MAX_CSV_BYTES:,} bytes; left out")
        return []
    inputs = _mistake_inputs(folder)
    wanted = {str(int(p)) for p in inputs[0]} if inputs is not None else set()
    rows: list[dict[str, str]] = []
    total = 0
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.DictReader(handle):
            total += 1
            if len(rows) < MAX_PREDICTION_ROWS or row.get("index") in wanted:
                rows.append(row)
    if total > MAX_PREDICTION_ROWS:
        problems.append(
            f"{path.name}: {total:,} rows; this page uses the first {MAX_PREDICTION_ROWS:,} "
            "(the test split is in random order) and the worst mistakes"
        )
    return rows


def _float(value: Any) -> float | None:
    try:
        number_value = float(value)
    except (TypeError, ValueError):
        return None
    return number_value


def write_run_report(folder: Path) -> Path:
    """Write ``RUN/report.html`` from the run folder's files; returns its path.

    Raises:
        InputError: not a run folder.
        RunDirError: the report could not be written.
    """
    files = read_run_files(folder)
    target = RunDir(files.path).file(REPORT)
    write_text(target, run_page(files))
    return target


def run_page(files: RunFiles) -> str:
    """The whole report page of one run."""
    data: dict[str, Any] = {"charts": {}}
    parts = [
        ("headline", "Headline", _headline(files)),
        ("curves", "Learning curves", _curves(files, data)),
        ("classes", "Classes", _classes(files)),
        ("mistakes", "Worst mistakes", _mistakes(files)),
        ("probabilities", "Predicted probabilities", _probabilities(files, data)),
        ("inside", "Inside the model", inside_section(files.path, data)),
        ("layers", "Layers", _layers(files)),
        ("config", "Config", _config(files)),
        ("about", "Versions and timings", _about(files)),
    ]
    shown = [(anchor, title, body) for anchor, title, body in parts if body]
    status = str(files.info.get("status", "unknown"))
    subtitle = f"{files.path.name} \u00b7 {status} \u00b7 {files.task or 'unknown task'}"
    return page(f"Run {files.name}", subtitle, shown, data)


# ------------------------------------------------------------------- sections


def _headline(files: RunFiles) -> str:
    info = files.info
    tiles = []
    split = next((s for s in ("test", "validation", "train") if isinstance(files.metrics.get(s), dict)), None)  # fmt: skip
    if split is not None:
        for name, value in files.metrics[split].items():
            tiles.append(f"<div class=tile><span>{text(split)} {text(name)}</span><b>{number(value)}</b></div>")  # fmt: skip
    facts = [
        ("status", info.get("status")),
        ("epochs", info.get("epochs_completed")),
        ("parameters", info.get("params")),
        ("seconds", info.get("duration_s")),
        ("seed", info.get("seed")),
    ]
    tiles += [f"<div class=tile><span>{text(k)}</span><b>{number(v)}</b></div>" for k, v in facts if v is not None]  # fmt: skip
    body = f"<div class=tiles>{''.join(tiles)}</div>"
    if info.get("error"):
        body += f"<p><b>error:</b> {text(info['error'])}</p>"
    if info.get("stopped_early"):
        body += f"<p>Early stopping ended the run; the model keeps the weights of epoch {number(info.get('weights_from_epoch'))}.</p>"  # fmt: skip
    splits = [s for s in reversed(SPLITS) if isinstance(files.metrics.get(s), dict)]
    names = list(dict.fromkeys(n for s in splits for n in files.metrics[s]))
    if splits:
        rows = [[s, *(files.metrics[s].get(n) for n in names)] for s in splits]
        body += table(["split", *names], rows, numeric=[False, *([True] * len(names))])
    for problem in files.problems:
        body += f"<p class=note>{text(problem)}</p>"
    return section("headline", "Headline", Markup(body))


def best_epoch(files: RunFiles) -> tuple[str, int] | None:
    """(the quantity, the epoch) at which the run did best by its own monitor."""
    training = files.config.get("training") if isinstance(files.config.get("training"), dict) else {}  # fmt: skip
    monitor, mode = None, "auto"
    for key in ("early_stopping", "save_best"):
        part = training.get(key) if isinstance(training, dict) else None
        if isinstance(part, dict) and isinstance(part.get("monitor"), str):
            monitor, mode = part["monitor"], str(part.get("mode", "auto"))
            break
    if not files.history:
        return None
    if monitor is None or monitor not in files.history[0]:
        monitor = "val_loss" if "val_loss" in files.history[0] else "loss"
    values = [(row.get(monitor), int(row.get("epoch") or i + 1)) for i, row in enumerate(files.history)]  # fmt: skip
    finite_values = [(v, e) for v, e in values if v is not None and math.isfinite(v)]
    if not finite_values:
        return None
    sign = -1 if resolve_mode(monitor, mode) == "max" else 1
    return monitor, min(finite_values, key=lambda pair: (sign * pair[0], pair[1]))[1]


def _curves(files: RunFiles, data: dict[str, Any]) -> str:
    if not files.history:
        return section("curves", "Learning curves", Markup("<p class=note>no epochs recorded (history.csv is missing or empty)</p>"))  # fmt: skip
    epochs = [int(row.get("epoch") or i + 1) for i, row in enumerate(files.history)]
    marks = []
    best = best_epoch(files)
    kept = files.info.get("weights_from_epoch")
    if best is not None:
        label = f"best {best[0]}" + (" (weights kept)" if kept == best[1] else "")
        marks.append(Mark(best[1], label))
    if isinstance(kept, int) and (best is None or kept != best[1]):
        marks.append(Mark(kept, "weights kept", "#9333ea"))
    for resume in files.info.get("resumed") or []:
        if isinstance(resume, dict) and isinstance(resume.get("from_epoch"), int):
            marks.append(Mark(resume["from_epoch"] + 0.5, "resumed", "#6b7280"))
    keys = [k for k in files.history[0] if not k.startswith("val_") and k not in NOT_PLOTTED]
    figures = []
    for key in keys:
        series = [Series("train", [r.get(key) for r in files.history], charts.TRAIN)]
        if f"val_{key}" in files.history[0]:
            series.append(Series("validation", [r.get(f"val_{key}") for r in files.history], charts.VALIDATION))  # fmt: skip
        chart = charts.line_chart(f"curve-{key}", key.replace("_", " "), epochs, series, marks)
        data["charts"][f"curve-{key}"] = chart.data
        figures.append(chart.html)
    rates = [r.get("learning_rate") for r in files.history]
    if len({r for r in rates if r is not None}) > 1:
        chart = charts.line_chart("curve-learning_rate", "learning rate", epochs, [Series("learning rate", rates, "#16a34a")])  # fmt: skip
        data["charts"]["curve-learning_rate"] = chart.data
        figures.append(chart.html)
    hint = (
        "Hover for each epoch's values. Validation loss rising while training loss falls is "
        "overfitting; both high and flat is underfitting; a dashed line marks the best epoch."
    )
    return section("curves", "Learning curves", Markup(f"<div class=charts>{''.join(figures)}</div>"), hint)  # fmt: skip


def _classes(files: RunFiles) -> str:
    report = files.metrics.get("test_classes")
    if not isinstance(report, dict):
        return ""
    body = ""
    matrix = report.get("confusion_matrix")
    if isinstance(matrix, dict):
        labels = [str(x) for x in matrix.get("labels") or []]
        rows = matrix.get("rows_true_columns_predicted") or []
        peak = max((c for row in rows for c in row if isinstance(c, int | float)), default=0) or 1
        head = "".join(f"<th>{text(label)}</th>" for label in labels)
        lines = []
        for label, row in zip(labels, rows, strict=False):
            cells = []
            for column, count in enumerate(row):
                share = (count / peak) if isinstance(count, int | float) else 0
                ink = "#fff" if share > 0.55 else "#1d2330"
                tone = f"rgba(37,99,235,{0.08 + 0.85 * share:.2f})"
                title = f"true {label}, predicted {labels[column] if column < len(labels) else column}: {count}"  # fmt: skip
                cells.append(f'<td style="background:{tone};color:{ink}" title="{text(title)}">{number(count)}</td>')  # fmt: skip
            lines.append(f"<tr><th>{text(label)}</th>{''.join(cells)}</tr>")
        body += (
            "<h3>Confusion matrix (test)</h3><table class=matrix><thead><tr><th>true \\ predicted</th>"
            f"{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
        )
    per_class = report.get("per_class")
    if isinstance(per_class, dict):
        names = ["precision", "recall", "f1-score", "support"]
        rows_out = [[name, *(v.get(n) if isinstance(v, dict) else None for n in names)] for name, v in per_class.items()]  # fmt: skip
        for average in ("macro_avg", "weighted_avg"):
            if isinstance(report.get(average), dict):
                rows_out.append([average.replace("_", " "), *(report[average].get(n) for n in names)])  # fmt: skip
        body += "<h3>Per class (test)</h3>" + table(["class", *names], rows_out, sortable=True, numeric=[False, True, True, True, True])  # fmt: skip
    hint = "The diagonal is what the model got right; a bright cell off it is a pair of classes it confuses. Click a column to sort."  # fmt: skip
    return section("classes", "Classes", Markup(body), hint)


def _mistakes(files: RunFiles) -> str:
    rows = files.predictions
    if not rows:
        return ""
    regression = files.task == "regression" or "error" in rows[0]
    if regression:
        badness = np.array([abs(_float(r.get("error")) or 0.0) for r in rows])
        wrong = np.ones(len(rows), dtype=bool)
    else:
        wrong = np.array([r.get("correct") != "True" for r in rows])
        badness = np.array([_float(r.get(f"prob_{r.get('predicted')}")) or 0.0 for r in rows])
    # predictions.csv's index is each row's position in the test split (a streamed split may
    # leave out an image that failed to decode); mistakes.npz names its examples by it too
    positions = [int(_float(r.get("index")) or 0) if r.get("index") else i for i, r in enumerate(rows)]  # fmt: skip
    row_at = {position: number_in_csv for number_in_csv, position in enumerate(positions)}
    inputs = _mistake_inputs(files.path)
    by_row: dict[int, np.ndarray] = {}
    if inputs is not None:
        chosen = [row_at[int(p)] for p in inputs[0] if int(p) in row_at]
        by_row = {row_at[int(p)]: x for p, x in zip(inputs[0], inputs[1], strict=True) if int(p) in row_at}  # fmt: skip
    else:
        chosen = [int(i) for i in worst_mistakes(wrong, badness)]
    if not chosen:
        return section("mistakes", "Worst mistakes", Markup("<p>No mistakes on the test set.</p>"))
    images = inputs is not None and inputs[1].ndim >= 3
    if images:
        cards = []
        for row_number in chosen:
            row, position = rows[row_number], positions[row_number]
            picture = f'<img alt="test example {position}" src="{charts.png_data_uri(by_row[row_number])}">' if row_number in by_row else ""  # fmt: skip
            cards.append(
                f"<div class=mistake>{picture}<div>#{position}: true <b>{text(row.get('true'))}</b></div>"
                f"<div>predicted <b>{text(row.get('predicted'))}</b> ({number(badness[row_number])})</div></div>"
            )
        body = f"<div class=mistakes>{''.join(cards)}</div>"
    else:
        features = [str(n) for n in files.info.get("feature_names") or []]
        width = max((len(np.ravel(x)) for x in by_row.values()), default=0)
        features = (features + [f"x{i}" for i in range(len(features), width)])[:width]
        score = "error" if regression else "probability"
        header = ["index", "true", "predicted", score, *features]
        table_rows = []
        for row_number in chosen:
            row = rows[row_number]
            values: list[float | None] = [float(v) for v in np.ravel(by_row[row_number])] if row_number in by_row else []  # fmt: skip
            values += [None] * (len(features) - len(values))
            table_rows.append([positions[row_number], row.get("true"), row.get("predicted"), float(badness[row_number]), *values])  # fmt: skip
        body = table(header, table_rows, sortable=True, numeric=[True, False, False, True, *([True] * len(features))])  # fmt: skip
        if inputs is None:
            body += f"<p class=note>{text(MISTAKES)} is missing (a run from before dltool kept it): no input values.</p>"  # fmt: skip
    hint = (
        "The largest errors on the test set." if regression else
        "The most confident wrong answers on the test set: a label that looks wrong, or a "
        "class that looks like another, is the data's problem more than the model's."
    )  # fmt: skip
    return section("mistakes", "Worst mistakes", Markup(body), hint)


def _mistake_inputs(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    path = folder / MISTAKES
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return np.asarray(archive["index"]), np.asarray(archive["x"])
    except (OSError, ValueError, KeyError):
        return None


def _probabilities(files: RunFiles, data: dict[str, Any]) -> str:
    if files.task != "binary" or not files.predictions:
        return ""
    columns = [c for c in files.predictions[0] if c.startswith("prob_")]
    if len(columns) != 2:
        return ""
    positive = columns[1].removeprefix("prob_")
    edges = [i / 20 for i in range(21)]
    groups = []
    for number_in_order, name in enumerate(dict.fromkeys(r.get("true", "") for r in files.predictions)):  # fmt: skip
        values = [_float(r.get(columns[1])) for r in files.predictions if r.get("true") == name]
        counts, _ = np.histogram([v for v in values if v is not None], bins=edges)
        color = charts.PALETTE[number_in_order % len(charts.PALETTE)]
        groups.append(Series(f"true {name}", [int(c) for c in counts], color))
    chart = charts.histogram("probabilities", f"predicted probability of {positive}", edges, groups, f"p({positive})")  # fmt: skip
    data["charts"]["probabilities"] = chart.data
    hint = (
        "Each true class's predicted probabilities: well separated humps near 0 and 1 mean a "
        "confident model; bars of the wrong class on the far side are its confident mistakes."
    )
    return section("probabilities", "Predicted probabilities", Markup(chart.html), hint)  # fmt: skip


def _layers(files: RunFiles) -> str:
    layers = files.info.get("layers")
    if isinstance(layers, list) and layers:
        rows = [
            [row.get("name"), row.get("type"), str(row.get("output_shape")), row.get("params")]
            for row in layers
            if isinstance(row, dict)
        ]
        total = files.info.get("params")
        body = table(["layer", "type", "output shape", "parameters"], rows, numeric=[False, False, False, True])  # fmt: skip
        if isinstance(total, int):
            body += f"<p>{number(total)} parameters in all.</p>"
    elif files.summary:
        body = f"<pre>{text(files.summary)}</pre>"
    else:
        return ""
    hint = "Each layer's output shape and weights; the parameters are what training adjusts."
    return section("layers", "Layers", Markup(body), hint)


def _config(files: RunFiles) -> str:
    if not files.config:
        return ""
    defaults = [str(k) for k in files.info.get("config_defaults") or []]
    flat = flatten(files.config)
    rows, classes = [], []
    for key, value in flat.items():
        filled = any(key == d or key.startswith((f"{d}.", f"{d}[")) for d in defaults)
        shown = Markup(text(_yaml_text(value)) + ('<span class="tag">default</span>' if filled else ""))  # fmt: skip
        rows.append([key, shown])
        classes.append("default" if filled else "")
    body = table(["key", "value"], rows, row_classes=classes, table_class="config")
    if "config_defaults" not in files.info:
        body += "<p class=note>This run does not record which keys were defaults (it predates that).</p>"  # fmt: skip
    hint = "The resolved config the run trained with; grey rows marked default were filled in by dltool, not written in the file."  # fmt: skip
    return section("config", "Config", Markup(body), hint)


def _yaml_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value) if not isinstance(value, float) else repr(value)


def _about(files: RunFiles) -> str:
    info = files.info
    facts = [
        ("run folder", str(files.path)),
        ("config file", info.get("config_source")),
        ("command", " ".join(str(a) for a in info.get("command") or []) or None),
        ("started", info.get("started_at")),
        ("finished", info.get("finished_at")),
        ("duration (s)", info.get("duration_s")),
        ("host", info.get("host")),
        ("overrides", ", ".join(str(o) for o in info.get("overrides") or []) or None),
        (
            "examples",
            ", ".join(f"{k} {v}" for k, v in (info.get("examples") or {}).items()) or None,
        ),
    ]
    for resume in info.get("resumed") or []:
        if isinstance(resume, dict):
            facts.append(
                ("resumed", f"at {resume.get('at')} from epoch {resume.get('from_epoch')}")
            )
    if info.get("parent") is not None:
        facts.append(("continues", f"{info.get('parent')} after epoch {info.get('continued_from_epoch')}"))  # fmt: skip
    facts.append(("reproduces", info.get("reproduces")))
    data = info.get("data_fingerprint")
    if isinstance(data, dict):  # SHA-256 of each split and data file (dltool.fingerprint)
        sources = data.get("sources")
        sources = sources if isinstance(sources, dict) else {}
        facts += [(f"data {k} SHA-256", data.get(k)) for k in ("train", "validation", "test")]
        facts += [(f"SHA-256 of {path}", digest) for path, digest in sources.items()]
    body = table(["", ""], [[k, str(v)] for k, v in facts if v is not None])
    timings = info.get("timings")
    if isinstance(timings, dict):
        body += "<h3>Seconds per phase</h3>" + table(["phase", "seconds"], list(timings.items()), numeric=[False, True])  # fmt: skip
    if files.history and "duration_s" in files.history[0]:
        seconds = [r.get("duration_s") or 0.0 for r in files.history]
        body += f"<p>Epochs took {number(min(seconds))} to {number(max(seconds))} s ({number(sum(seconds) / len(seconds))} s on average).</p>"  # fmt: skip
    versions = info.get("versions")
    if isinstance(versions, dict):
        body += "<h3>Versions</h3>" + table(["package", "version"], [[k, str(v)] for k, v in versions.items()])  # fmt: skip
    return section("about", "Versions and timings", Markup(body))
