"""views.py: values from files printed as text, tables that fit, plain lines in a pipe."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dltool import views

WIDTHS = [60, 80, 200]
LONG = "student-overfit-trial12-with-a-long-name-20261124-223141"  # 56 characters
RUNS_DIR = Path("/data/some/where/runs-for-a-long-experiment/regularization-sweep-20261124/runs")


def _render(width: int | None, draw: Callable[[Console], None]) -> str:
    """What ``draw`` prints on a terminal ``width`` columns wide (None: into a pipe)."""
    file = io.StringIO()
    if width is None:
        out = Console(file=file, highlight=False, soft_wrap=True)
    else:
        out = Console(file=file, width=width, force_terminal=True, color_system=None, highlight=False, soft_wrap=True)  # fmt: skip
    draw(out)
    return file.getvalue()


def _summary(run: str, overrides: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "run": run,
        "path": f"runs/{run}",
        "status": "completed",
        "started_at": "2026-11-24T22:31:41+01:00",
        "duration_s": 12.3,
        "params": 1_234_567,
        "overrides": overrides,
        "metrics": {"test": {"loss": 0.2912, "accuracy": 0.9123, "auc": 0.95}},
        "problems": [],
        **fields,
    }


SUMMARIES = [
    _summary(LONG, ["model.layers[2].rate=0.3", "training.regularization.l2=0.001"]),
    _summary("short-20261124-223141", ["model.layers[2].rate=0.5"], status="crashed"),
]


def _whole_on_one_line(text: str, names: list[str]) -> None:
    lines = text.splitlines()
    for name in names:
        assert any(name in line for line in lines), f"{name!r} is not whole on one line:\n{text}"


def _never_cut(text: str, name: str) -> None:
    """``name`` is shown whole on one line, or not at all (its column dropped)."""
    for line in text.splitlines():
        assert name[:12] not in line or name in line, f"{name!r} is cut:\n{text}"


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_table_never_wraps_names(width: int) -> None:
    text = _render(width, lambda out: views.runs_table(out, SUMMARIES, RUNS_DIR))
    _whole_on_one_line(text, [s["run"] for s in SUMMARIES] + [str(RUNS_DIR)])
    table = [line for line in text.splitlines() if line.startswith(("┃", "│", "┏", "└"))]
    assert table, text
    assert all(len(line) <= width for line in table), text
    assert "run" in table[1]
    if width == 200:  # room for everything
        assert "training.regularization.l2=0.001" in text
        assert "1,234,567" in text
    if width == 80:  # the run, its status and test loss; the rest dropped or cut
        assert "crashed" in text
        assert "1,234,567" not in text


def test_runs_table_in_a_pipe_is_one_line_per_run() -> None:
    text = _render(None, lambda out: views.runs_table(out, SUMMARIES, RUNS_DIR))
    header, *lines = text.splitlines()
    assert header.split("\t") == ["run", "status", "started", "time", "params", "overrides", "test.loss", "test.accuracy", "test.auc"]  # fmt: skip
    assert [line.split("\t") for line in lines] == [
        [
            LONG,
            "completed",
            "11-24 22:31",
            "12s",
            "1,234,567",
            "model.layers[2].rate=0.3 training.regularization.l2=0.001",
            "0.2912",
            "0.9123",
            "0.9500",
        ],
        [
            "short-20261124-223141",
            "crashed",
            "11-24 22:31",
            "12s",
            "1,234,567",
            "model.layers[2].rate=0.5",
            "0.2912",
            "0.9123",
            "0.9500",
        ],
    ]


def test_names_wider_than_the_terminal_become_plain_lines() -> None:
    text = _render(40, lambda out: views.runs_table(out, SUMMARIES, RUNS_DIR))
    assert f"{LONG}\tcompleted" in text.splitlines()[2]  # after the title and the header


COMPARED = {
    "runs": [LONG, "short-20261124-223141", "other-name-20261124-223150"],
    "config_differences": {
        "training.optimizer.learning_rate": [1e-07, 0.001, 0.5],
        "training.metrics": [["accuracy"], ["accuracy", "auc"], []],
        "training.early_stopping": [None, True, False],
    },
    "metrics": {"test.loss": [1e-07, 0.2912, None], "test.accuracy": [0.9, 0.95, None]},
    "status": ["completed", "completed", "failed"],
    "params": [21, 1_234_567, None],
}


@pytest.mark.parametrize("width", WIDTHS)
def test_comparison_never_wraps_names(width: int) -> None:
    text = _render(width, lambda out: views.comparison(out, COMPARED))
    _whole_on_one_line(text, [*COMPARED["runs"], *COMPARED["config_differences"]])
    assert all(len(line) <= width for line in text.splitlines()), text
    assert ("#1  " + LONG in text) == (width < 200)  # numbered where the names do not fit


def test_comparison_shows_yaml_values_and_small_numbers() -> None:
    text = _render(None, lambda out: views.comparison(out, COMPARED))
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in text.splitlines()}
    assert rows["key"] == COMPARED["runs"]
    assert rows["training.optimizer.learning_rate"] == ["1.0e-07", "0.001", "0.5"]
    assert rows["training.metrics"] == ["[accuracy]", "[accuracy, auc]", "[]"]
    assert rows["training.early_stopping"] == ["null", "true", "false"]
    assert rows["test.loss"] == ["1e-07", "0.2912", "-"]
    assert rows["params"] == ["21", "1,234,567", "-"]
    assert rows["status"] == ["completed", "completed", "failed"]


OUTCOMES = [
    {
        "path": Path("configs/a-long-experiment-file-name.yaml"),
        "exit": 0,
        "metrics": {"loss": 0.2912, "accuracy": 0.9123},
        "folder": Path("runs/a-long-experiment-file-name-20261124-223141"),
    },
    {"path": Path("configs/broken.yaml"), "exit": 2},
]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("show_folders", [True, False])
def test_batch_summary_never_wraps_paths(width: int, show_folders: bool) -> None:
    text = _render(width, lambda out: views.batch_summary(out, "runs", OUTCOMES, show_folders))
    _whole_on_one_line(text, [str(o["path"]) for o in OUTCOMES])
    _never_cut(text, str(OUTCOMES[0]["folder"]))
    assert (str(OUTCOMES[0]["folder"]) in text) == (show_folders and width != 80)
    assert "failed (exit 2)" in text
    if width == 200:
        assert "loss 0.2912  accuracy 0.9123" in text


def test_batch_summary_in_a_pipe() -> None:
    text = _render(None, lambda out: views.batch_summary(out, "smoke runs", OUTCOMES, True))
    assert text.splitlines() == [
        "smoke runs",
        "config\tstatus\ttest metrics\trun folder",
        "configs/a-long-experiment-file-name.yaml\tok\tloss 0.2912  accuracy 0.9123\truns/a-long-experiment-file-name-20261124-223141",
        "configs/broken.yaml\tfailed (exit 2)\t-\t-",
    ]


PLANTED = (
    "[bold red]boom[/] \x1b]0;pwned\x07title \x1b[31mred\x9b31m\x7f tab\there\nnewline \u202eevil"
)


def test_printable_strips_control_characters() -> None:
    assert views.printable(PLANTED) == "[bold red]boom[/] ]0;pwnedtitle [31mred31m tab here newline evil"  # fmt: skip


@pytest.mark.parametrize("width", [None, 200])
def test_file_values_are_text_never_markup(width: int | None) -> None:
    """Markup in run.json or config.yaml values is shown as typed; escapes never reach the terminal."""
    planted = [_summary(f"run{PLANTED}", [PLANTED], status=PLANTED, problems=[PLANTED])]
    compared = {**COMPARED, "runs": [PLANTED, "b", "c"], "status": [PLANTED, "x", "y"], "config_differences": {PLANTED: [PLANTED, 1, 2]}}  # fmt: skip
    file = io.StringIO()
    out = Console(file=file, width=width or 80, force_terminal=width is not None, color_system="truecolor" if width else None)  # fmt: skip
    views.runs_table(out, planted, Path(PLANTED))
    views.comparison(out, compared)
    views.batch_summary(out, PLANTED, [{"path": Path(PLANTED), "exit": 0, "metrics": {PLANTED: 1.0}, "folder": Path(PLANTED)}], True)  # fmt: skip
    views.final_metrics(out, Path(PLANTED), {"test": {PLANTED: 0.5}})
    text = file.getvalue()
    assert "[bold red]boom[/]" in text
    for sequence in ("\x1b]", "\x1b[31m", "\x07", "\x9b", "\x7f", "\u202e"):
        assert sequence not in text, repr(sequence)
    if width is not None:
        assert "\x1b[1;31mboom" not in text  # the markup was not applied


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1e-07, "1e-07"),
        (0.00123456, "0.00123"),
        (0.5, "0.5000"),
        (0.0, "0.0000"),
        (12345.678, "12345.6780"),
        (float("nan"), "nan"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_number(value: Any, shown: str) -> None:
    assert views.number(value) == shown


def test_api_console_does_not_wrap_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """dltool.train's default console, with stdout a file: epoch lines stay one line each."""
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stdout", captured)
    long_line = "epoch 1/1  " + "  ".join(f"metric_{i} 0.1234" for i in range(12))
    views.console().print(long_line)
    assert captured.getvalue() == long_line + "\n"
