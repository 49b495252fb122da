"""How dltool shows things: tables and lines on a terminal, plain lines in a pipe.

The one owner of two rules (STYLE.md, "Output for people and for pipes"):

- Text read from files (run names, config values, class names, paths) is data:
  :func:`printable` makes it one plain line, and it is printed as rich ``Text``,
  never parsed as markup.
- Names and paths never wrap. On a terminal a table cuts (with an ellipsis) and then
  drops its low-value columns until it fits; when stdout is not a terminal (a pipe,
  a CI log) a table is printed as plain lines, a tab-separated header and one line per
  row, that grep, cut and awk can use.

Kept apart from cli.py, which only parses arguments and maps errors to exit codes.
Longer than 400 lines because it renders every table dltool prints (runs, compare, the
train and smoke summaries, predictions, evaluations, datasets) in both forms.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from dltool.rundir import (
    STATUS_COMPLETED,
    STATUS_CRASHED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_PRUNED,
    STATUS_RUNNING,
)

STATUS_STYLE = {STATUS_COMPLETED: "green", STATUS_FAILED: "red", STATUS_CRASHED: "red", STATUS_INTERRUPTED: "yellow", STATUS_RUNNING: "cyan", STATUS_PRUNED: "magenta"}  # fmt: skip

# C0 (ESC included), DEL, C1, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile("[\t\n\v\f\r]+")
_EMPTY = "-"  # an empty field in plain lines, so that awk's fields stay in place


def console(quiet: bool = False) -> Console:
    """A console for stdout that never breaks a line of its own (rich breaks at 80
    columns when stdout is not a terminal)."""
    return Console(highlight=False, soft_wrap=True, quiet=quiet)


def printable(text: Any) -> str:
    """A value from a file as one line of plain text: tabs and line breaks become a
    space, every other control character (an escape sequence's ESC) is removed."""
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", str(text)))


def value_text(value: Any) -> str:
    """A config or run.json value as the YAML text a config file would use:
    ``null``, ``true``, ``[accuracy]``, ``1.0e-07``; text as it is."""
    if isinstance(value, str):
        return printable(value)
    try:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=2**31)
    except yaml.YAMLError:
        text = str(value)
    return printable(text.removesuffix("\n...\n").strip())


def number(value: Any) -> str:
    """A metric: 4 decimals, and 3 significant digits below 0.01 (``1e-07``, not ``0.0000``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value_text(value)
    if value != 0 and math.isfinite(value) and abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.4f}"


def cell(value: Any, style: str = "") -> Text:
    """A table cell holding a value from a file, as :func:`value_text`; None is empty."""
    return Text("" if value is None else value_text(value), style=style)


def metric_cell(value: Any) -> Text:
    """A table cell holding a metric, as :func:`number`; None is empty."""
    return Text("" if value is None else number(value))


def line(out: Console, *parts: str | tuple[str, str]) -> None:
    """One line of text; each part is printable text, or (text, style) for a word of ours."""
    pieces = [(printable(p[0]), p[1]) if isinstance(p, tuple) else printable(p) for p in parts]
    out.print(Text.assemble(*pieces), soft_wrap=True)


@dataclass(frozen=True)
class Column:
    """A table column, and what it gives up on a narrow terminal."""

    header: str
    justify: JustifyMethod = "left"
    drop: int = 0  # 0: always shown; on a narrow terminal the highest number goes first
    shortest: int | None = None  # may be cut to this width, with an ellipsis; None: always whole


def fit(columns: Sequence[Column], rows: Sequence[Sequence[Text]], width: int) -> list[tuple[int, int]] | None:  # fmt: skip
    """(column index, width) of the columns shown in ``width`` terminal columns, or None
    when the columns that are never dropped are too wide. Columns join from the most
    valuable (lowest ``drop``) while they fit at their ``shortest``; then the spare width
    goes back to them. Whole ones (names, paths) are never cut."""
    natural = [
        max([cell_len(printable(c.header)), *(row[i].cell_len for row in rows)])
        for i, c in enumerate(columns)
    ]
    least = [
        n if c.shortest is None else min(n, max(c.shortest, 1))
        for c, n in zip(columns, natural, strict=True)
    ]

    def frame(count: int) -> int:
        return 3 * count + 1  # a border and a space each side of every column

    def fits(indexes: list[int]) -> bool:
        return sum(least[i] for i in indexes) + frame(len(indexes)) <= width

    shown = [i for i, c in enumerate(columns) if c.drop == 0]
    if not fits(shown):
        return None
    for index in sorted(
        (i for i, c in enumerate(columns) if c.drop), key=lambda i: columns[i].drop
    ):
        if fits([*shown, index]):  # the most valuable columns first, each if it still fits
            shown = sorted([*shown, index])
    widths = {i: natural[i] for i in shown}
    excess = sum(widths.values()) + frame(len(shown)) - width
    while excess > 0:  # one character at a time from the column with the most to spare
        widest = max(shown, key=lambda i: widths[i] - least[i])
        widths[widest] -= 1
        excess -= 1
    return [(i, widths[i]) for i in shown]


def table(
    out: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Text]],
    title: str | None = None,
    title_in_pipe: bool = False,
) -> None:
    """A table that fits the terminal, or plain lines when stdout is not a terminal
    (or the names alone are wider than the terminal)."""
    shown = fit(columns, rows, out.width) if out.is_terminal else None
    if title and (out.is_terminal or title_in_pipe):
        out.print(Text(printable(title), style="italic"), soft_wrap=True)
    if shown is None:
        plain_lines(out, [c.header for c in columns], rows)
        return
    grid = Table()
    for index, width in shown:
        column = columns[index]
        header = Text(printable(column.header))  # run names head compare's columns
        grid.add_column(
            header, justify=column.justify, no_wrap=True, overflow="ellipsis", width=width
        )
    for row in rows:
        grid.add_row(*(row[index] for index, _ in shown))
    out.print(grid)


def plain_lines(out: Console, header: Sequence[str], rows: Sequence[Sequence[Text]]) -> None:
    """The header and one line per row, fields separated by tabs, ``-`` for an empty one.

    Written to the console's file directly: rich would turn the tabs into spaces.
    """
    if out.quiet:
        return
    for fields in [header, *([c.plain for c in row] for row in rows)]:
        out.file.write("\t".join(printable(f) or _EMPTY for f in fields) + "\n")
    out.file.flush()


def final_metrics(out: Console, path: Path, metrics: dict[str, dict[str, float]]) -> None:
    """The metrics table printed at the end of `dltool train`, then the run folder."""
    names = list(dict.fromkeys(k for split in metrics.values() for k in split))
    columns = [Column("split"), *(Column(m, justify="right") for m in names)]
    rows = [[cell(split), *(metric_cell(values.get(m)) for m in names)] for split, values in metrics.items()]  # fmt: skip
    table(out, columns, rows, title="final metrics", title_in_pipe=True)
    line(out, ("run saved to", "green"), " ", str(path))


def predictions(out: Console, result: Any) -> None:
    """The first rows of `dltool predict`'s output and the counts per class."""
    grid = Table(
        title=f"first {len(result.first_rows)} of {result.rows:,} predictions",
        title_justify="left",
    )
    for column in result.header:
        grid.add_column(Text(printable(column)), overflow="fold")
    for row in result.first_rows:
        grid.add_row(*(cell(v) for v in row))
    out.print(grid)
    if result.counts:
        counts = ", ".join(f"{name} {count:,}" for name, count in sorted(result.counts.items()))
        line(out, "predicted classes: ", counts)
    for note in result.notes:
        line(out, "note: ", note)
    line(out, ("predictions written to", "green"), " ", str(result.output))


def export_result(out: Console, result: Any) -> None:
    """`dltool export`: what the check found, then the folder."""
    same = result.same_class_share
    classes = f", the same class in {same:.1%} of rows" if same is not None else ""
    line(
        out,
        ("checked", "green"),
        f" {result.format} against model.keras on {result.rows:,} test rows: largest "
        f"difference {result.max_abs_difference:.2g}{classes}",
    )
    line(out, ("export", "green"), " written to ", str(result.folder))


def evaluation(out: Console, result: Any, data_path: Path) -> None:
    """`dltool evaluate`: metrics, then precision/recall/F1 per class."""
    line(out, f"{result.examples:,} examples from ", str(data_path))
    grid = Table(title="metrics", title_justify="left")
    for name in result.metrics:
        grid.add_column(Text(printable(name)), justify="right")
    grid.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    out.print(grid)
    if result.report:
        per_class = Table(title="per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1-score", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for name, scores in result.report["per_class"].items():
            per_class.add_row(
                cell(name),
                *(f"{scores[k]:.3f}" for k in ("precision", "recall", "f1-score")),
                str(int(scores["support"])),
            )
        out.print(per_class)
        confusion(out, result.report["confusion_matrix"])
    for note in result.notes:
        line(out, "note: ", note)
    line(out, ("evaluation written to", "green"), " ", str(result.folder))


def confusion(out: Console, matrix: dict[str, Any]) -> None:
    """The confusion matrix: one row per true class, one column per predicted class."""
    names = matrix["labels"]
    grid = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    grid.add_column("true")
    for name in names:
        grid.add_column(Text(printable(name)), justify="right")
    for i, (name, row) in enumerate(zip(names, matrix["rows_true_columns_predicted"], strict=True)):
        # the diagonal (right answers) in bold
        grid.add_row(cell(name), *(cell(n, "bold" if j == i else "") for j, n in enumerate(row)))
    out.print(grid)


def dataset(out: Console, config: Any, dataset: Any, result: dict[str, Any]) -> None:
    """`dltool data`: the splits, where they were written, and examples per class."""
    from dltool.data.export import class_counts

    grid = Table(title=f"{config.name}: data.source {config.data.source}", title_justify="left")
    grid.add_column("split")
    grid.add_column("examples", justify="right")
    grid.add_column("shape of one")
    grid.add_column("written to")
    for split, (x, _) in dataset.splits().items():
        grid.add_row(split, str(len(x)), str(list(x.shape[1:])), cell(result["written"][split]))
    out.print(grid)
    counts = class_counts(dataset)
    if counts:
        names = list(dict.fromkeys(name for split in counts.values() for name in split))
        by_class = Table(title="examples per class", title_justify="left")
        by_class.add_column("class")
        for split in counts:
            by_class.add_column(split, justify="right")
        for name in names:
            by_class.add_row(cell(name), *(str(counts[split].get(name, 0)) for split in counts))
        out.print(by_class)
    if result["stretch"] != 1.0:
        out.print(
            f"note: pixel values were multiplied by {result['stretch']:.4g} in the PNGs "
            "to make them visible; predict and evaluate divide them back for runs on this data",
            highlight=False,
        )


def layer_registry(out: Console) -> None:
    """`dltool layers`: every layer type with its parameters and defaults. In a pipe, one
    plain line per type (its parameters separated by "; ")."""
    from dltool.layers import LAYERS

    # Not through table(): on a terminal each type's parameters go one per line in a grid,
    # where table()'s columns hold one line per row.
    if not out.is_terminal:
        header = ["type", "what it does", "parameters (default)"]
        rows = [[Text(name), Text(spec.summary), Text("; ".join(_parameters(spec)) or _EMPTY)] for name, spec in LAYERS.items()]  # fmt: skip
        plain_lines(out, header, rows)
        return
    grid = Table(
        title="layer registry (model.layers[].type)", title_justify="left", show_lines=True
    )
    grid.add_column("type", style="bold cyan", no_wrap=True)
    grid.add_column("what it does")
    grid.add_column("parameters (default)")
    for name, spec in LAYERS.items():
        grid.add_row(name, spec.summary, "\n".join(_parameters(spec)) or _EMPTY)
    out.print(grid)


def runs_table(out: Console, summaries: list[dict[str, Any]], runs_dir: Path) -> None:
    """`dltool runs`: one row per run; each run's problems after it, on stderr."""
    metric_names = list(dict.fromkeys(m for x in summaries for m in x["metrics"].get("test", {})))
    shown_metrics = metric_names if not out.is_terminal else metric_names[:2]
    with_overrides = any(x["overrides"] for x in summaries)
    columns = [
        Column("run"),  # whole: the name people copy
        Column("status", drop=1, shortest=9),
        Column("started", drop=7, shortest=11),
        Column("time", justify="right", drop=5),
        Column("params", justify="right", drop=6),
        *((Column("overrides", drop=3, shortest=12),) if with_overrides else ()),
        *(
            Column(f"test.{m}", justify="right", drop=4 if i else 2)
            for i, m in enumerate(shown_metrics)
        ),
    ]
    rows = []
    for summary in summaries:
        status = summary["status"]
        test = summary["metrics"].get("test", {})
        duration, params = summary["duration_s"], summary["params"]
        rows.append(
            [
                cell(summary["run"]),
                cell(status, STATUS_STYLE.get(status, "")),
                cell(str(summary["started_at"] or "")[5:16].replace("T", " ")),
                cell(f"{duration:.0f}s" if duration is not None else None),
                cell(f"{params:,}" if params is not None else None),
                *((cell(" ".join(summary["overrides"])),) if with_overrides else ()),
                *(metric_cell(test.get(m)) for m in shown_metrics),
            ]
        )
    title = f"{len(summaries)} runs in {runs_dir} (all fields: --json)"
    table(out, columns, rows, title=title)
    _problem_notes({s["path"]: s["problems"] for s in summaries})


def _problem_notes(problems: dict[str, list[str]]) -> None:
    """``note: RUN: FILE: problem`` on stderr for each problem of a run folder."""
    notes = Console(stderr=True, highlight=False, soft_wrap=True)
    for path, lines in problems.items():
        for problem in lines:
            line(notes, ("note", "yellow"), ": ", path, ": ", problem)


def comparison(out: Console, result: dict[str, Any]) -> None:
    """`dltool runs compare`: config differences, then metrics side by side.

    The runs are the columns, headed by their names; when the names do not fit side
    by side they are numbered (#1, #2, ...) and listed above the tables.
    """
    names = result["runs"]
    differences = [[cell(key), *(Text(value_text(v)) for v in values)] for key, values in result["config_differences"].items()]  # fmt: skip
    differences += [[cell(key), *(cell(v) for v in values)] for key, values in result.get("data_differences", {}).items()]  # fmt: skip
    metrics = [
        [cell("status"), *(cell(s, STATUS_STYLE.get(s, "")) for s in result["status"])],
        [cell("params"), *(cell(f"{p:,}" if p is not None else None) for p in result["params"])],
        *(
            [cell(key), *(metric_cell(v) for v in values)]
            for key, values in result["metrics"].items()
        ),
    ]
    if not out.is_terminal:
        plain_lines(out, ["key", *names], [*metrics, *differences])
    else:
        _comparison_tables(out, names, differences, metrics)
    _problem_notes(result.get("problems", {}))


def _comparison_tables(out: Console, names: list[str], differences: list[list[Text]], metrics: list[list[Text]]) -> None:  # fmt: skip
    """The two tables of :func:`comparison` on a terminal, runs numbered if their names do not fit."""

    def columns(headers: list[str], first: str) -> list[Column]:
        runs = [
            Column(h, justify="right", shortest=max(8, cell_len(printable(h)))) for h in headers
        ]
        return [Column(first), *runs]

    headers = names
    width = out.width
    if any(fit(columns(names, k), rows, width) is None for k, rows in (("key", differences), ("metric", metrics))):  # fmt: skip
        headers = [f"#{n}" for n in range(1, len(names) + 1)]
        for header, name in zip(headers, names, strict=True):
            line(out, f"{header}  ", name)
    title = "config and data differences" if differences else "no config or data differences"
    table(out, columns(headers, "key"), differences, title=title)
    table(out, columns(headers, "metric"), metrics, title="metrics")


def reproduction(out: Console, result: Any) -> None:
    """`dltool reproduce`: each metric of the original run and the new one, and the difference."""
    columns = [Column("metric"), Column("original", justify="right"), Column("reproduced", justify="right"), Column("difference", justify="right"), Column("check", drop=1)]  # fmt: skip
    rows = []
    for key, original, new in result.rows:
        difference = None if original is None or new is None else new - original
        verdict = cell("differs", "red") if result.differs(original, new) else cell("ok", "green")
        rows.append([cell(key), metric_cell(original), metric_cell(new), Text("" if difference is None else f"{difference:+.3g}"), verdict])  # fmt: skip
    allowed = "exactly equal" if result.tolerance == 0 else f"within {result.tolerance}"
    table(out, columns, rows, title=f"metrics: original vs reproduced ({allowed})")
    line(out, ("reproduced in", "green"), " ", str(result.new))


def batch_summary(out: Console, title: str, outcomes: list[dict[str, Any]], show_folders: bool) -> None:  # fmt: skip
    """The table after several configs trained (`dltool train A B`, `dltool smoke`):
    one row per config with ``path``, ``exit`` (0: ok), test ``metrics`` and ``folder``."""
    columns = [
        Column("config"),
        Column("status"),
        Column("test metrics", drop=2, shortest=12),
        *((Column("run folder", drop=1),) if show_folders else ()),
    ]
    rows = []
    for outcome in outcomes:
        code = outcome["exit"]
        status = cell("ok", "green") if code == 0 else cell(f"failed (exit {code})", "red")
        shown = "  ".join(f"{k} {number(v)}" for k, v in outcome.get("metrics", {}).items())
        folder = outcome.get("folder")
        rows.append(
            [
                cell(str(outcome["path"])),
                status,
                cell(shown),
                *((cell(str(folder) if folder else None),) if show_folders else ()),
            ]
        )
    table(out, columns, rows, title=title, title_in_pipe=True)  # a CI log says what it lists


def _parameters(spec: Any) -> list[str]:
    """Each parameter of a layer spec with its default: ``units (required)``."""
    parts = []
    for field_name, info in spec.model_fields.items():
        if field_name == "type":
            continue
        shown = "required" if info.is_required() else _default_text(info.default)
        parts.append(f"{field_name} ({shown})")
    return parts


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return str(list(value))
    return str(value).lower() if isinstance(value, bool) else str(value)
