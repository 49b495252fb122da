"""How dltool shows things on the terminal: rich tables for each command's result.

Kept apart from cli.py, which only parses arguments and maps errors to exit codes.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

STATUS_STYLE = {"completed": "green", "failed": "red", "crashed": "red", "interrupted": "yellow", "running": "cyan"}  # fmt: skip


def cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def final_metrics(console: Console, path: Path, metrics: dict[str, dict[str, float]]) -> None:
    """The metrics table printed at the end of `dltool train`."""
    table = Table(title="final metrics", title_justify="left")
    names = list(dict.fromkeys(k for split in metrics.values() for k in split))
    table.add_column("split")
    for metric in names:
        table.add_column(metric, justify="right")
    for split, values in metrics.items():
        table.add_row(split, *(f"{values[m]:.4f}" if m in values else "" for m in names))
    console.print(table)
    console.print(f"[green]run saved to[/green] {path}")


def predictions(console: Console, result: Any) -> None:
    """The first rows of `dltool predict`'s output and the counts per class."""
    table = Table(
        title=f"first {len(result.first_rows)} of {result.rows:,} predictions",
        title_justify="left",
    )
    for column in result.header:
        table.add_column(column, overflow="fold")
    for row in result.first_rows:
        table.add_row(*(cell(v) for v in row))
    console.print(table)
    if result.counts:
        console.print(
            "predicted classes: "
            + ", ".join(f"{name} {count:,}" for name, count in sorted(result.counts.items()))
        )
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"[green]predictions written to[/green] {result.output}")


def evaluation(console: Console, result: Any, data_path: Path) -> None:
    """`dltool evaluate`: metrics, then precision/recall/F1 per class."""
    console.print(f"{result.examples:,} examples from {data_path}")
    table = Table(title="metrics", title_justify="left")
    for name in result.metrics:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    console.print(table)
    if result.report:
        per_class = Table(title="per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1-score", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for name, scores in result.report["per_class"].items():
            per_class.add_row(
                name,
                *(f"{scores[k]:.3f}" for k in ("precision", "recall", "f1-score")),
                str(int(scores["support"])),
            )
        console.print(per_class)
        confusion(console, result.report["confusion_matrix"])
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"[green]evaluation written to[/green] {result.folder}")


def confusion(console: Console, matrix: dict[str, Any]) -> None:
    """The confusion matrix: one row per true class, one column per predicted class."""
    names = matrix["labels"]
    table = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("true")
    for name in names:
        table.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(names, matrix["rows_true_columns_predicted"], strict=True)):
        # the diagonal (right answers) in bold
        table.add_row(name, *(f"[bold]{n}[/bold]" if j == i else str(n) for j, n in enumerate(row)))
    console.print(table)


def dataset(console: Console, config: Any, dataset: Any, result: dict[str, Any]) -> None:
    """`dltool data`: the splits, where they were written, and examples per class."""
    from dltool.data.export import class_counts

    table = Table(title=f"{config.name}: data.source {config.data.source}", title_justify="left")
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column("shape of one")
    table.add_column("written to")
    for split, (x, _) in dataset.splits().items():
        table.add_row(split, str(len(x)), str(list(x.shape[1:])), result["written"][split])
    console.print(table)
    counts = class_counts(dataset)
    if counts:
        names = list(dict.fromkeys(name for split in counts.values() for name in split))
        by_class = Table(title="examples per class", title_justify="left")
        by_class.add_column("class")
        for split in counts:
            by_class.add_column(split, justify="right")
        for name in names:
            by_class.add_row(name, *(str(counts[split].get(name, 0)) for split in counts))
        console.print(by_class)
    if result["stretch"] != 1.0:
        console.print(
            f"note: pixel values were multiplied by {result['stretch']:.4g} in the PNGs "
            "to make them visible; predict and evaluate divide them back for runs on this data",
            highlight=False,
        )


def layer_registry(console: Console) -> None:
    """`dltool layers`: every layer type with its parameters and defaults."""
    from dltool.layers import LAYERS

    table = Table(
        title="layer registry (model.layers[].type)", title_justify="left", show_lines=True
    )
    table.add_column("type", style="bold cyan", no_wrap=True)
    table.add_column("what it does")
    table.add_column("parameters (default)")
    for name, spec in LAYERS.items():
        table.add_row(name, spec.summary, _parameters(spec) or "-")
    console.print(table)


def runs_table(console: Console, summaries: list[dict[str, Any]], runs_dir: Path) -> None:
    """`dltool runs`: one row per run."""
    metric_names = list(dict.fromkeys(m for x in summaries for m in x["metrics"].get("test", {})))[
        :2
    ]
    with_overrides = any(x["overrides"] for x in summaries)
    table = Table(
        title=f"{len(summaries)} runs in {runs_dir} (all fields: --json)", title_justify="left"
    )
    table.add_column("run", overflow="fold", ratio=1)
    for column in ("status", "started", "time", "params"):
        table.add_column(column, no_wrap=True)
    if with_overrides:
        table.add_column("overrides", overflow="fold", ratio=1)
    for metric in metric_names:
        table.add_column(f"test {metric}", justify="right", no_wrap=True)
    for summary in summaries:
        status = summary["status"]
        test = summary["metrics"].get("test", {})
        table.add_row(
            summary["run"],
            f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]",
            str(summary["started_at"] or "")[5:16].replace("T", " "),
            f"{summary['duration_s']:.0f}s" if summary["duration_s"] is not None else "",
            f"{summary['params']:,}" if summary["params"] is not None else "",
            *((" ".join(summary["overrides"]),) if with_overrides else ()),
            *(f"{test[m]:.4f}" if m in test else "" for m in metric_names),
        )
    console.print(table)


def comparison(console: Console, result: dict[str, Any]) -> None:
    """`dltool runs compare`: config differences, then metrics side by side."""
    table = Table(
        title="config differences" if result["config_differences"] else "no config differences",
        title_justify="left",
    )
    table.add_column("key")
    for name in result["runs"]:
        table.add_column(name, overflow="fold")
    for key, values in result["config_differences"].items():
        table.add_row(key, *(cell(v) for v in values))
    console.print(table)
    metrics = Table(title="metrics", title_justify="left")
    metrics.add_column("metric")
    for name in result["runs"]:
        metrics.add_column(name, justify="right", overflow="fold")
    metrics.add_row("status", *result["status"])
    metrics.add_row("params", *(f"{p:,}" if p is not None else "" for p in result["params"]))
    for key, values in result["metrics"].items():
        metrics.add_row(key, *(f"{v:.4f}" if isinstance(v, float) else "" for v in values))
    console.print(metrics)


def _parameters(spec: Any) -> str:
    parts = []
    for field_name, info in spec.model_fields.items():
        if field_name == "type":
            continue
        shown = "required" if info.is_required() else _default_text(info.default)
        parts.append(f"{field_name} ({shown})")
    return "\n".join(parts)


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return str(list(value))
    return str(value).lower() if isinstance(value, bool) else str(value)
