"""The PNG plots: a grid of panels, whole-number epochs, no dot per point on long runs, titles."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltool import plots

KEYS = ("loss", "accuracy", "auc", "precision", "recall")


def history(epochs: int) -> list[dict[str, float]]:
    rows = []
    for epoch in range(1, epochs + 1):
        row: dict[str, float] = {"epoch": epoch}
        row.update(dict.fromkeys(KEYS, 1 / epoch))
        row.update({f"val_{key}": 1.1 / epoch for key in KEYS})
        row.update({"learning_rate": 0.001, "duration_s": 0.1})
        rows.append(row)
    return rows


@pytest.mark.parametrize("epochs", [3, 7, 300])
def test_learning_curves_are_a_grid_with_whole_epochs(epochs: int) -> None:
    figure = plots.learning_curves_figure(history(epochs), "my-run", best_epoch=2)
    shown = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in shown] == list(KEYS)
    assert figure.get_size_inches()[1] > 6  # two rows of three, not one thin row of five
    for axis in shown:
        left, right = axis.get_xlim()
        ticks = [t for t in axis.get_xticks() if left <= t <= right]
        assert ticks
        assert all(float(t).is_integer() for t in ticks), ticks
        markers = {line.get_marker() for line in axis.get_lines()[:2]}
        assert markers == ({"None"} if epochs > plots.MARKERS_UP_TO else {"o"})
    assert figure._suptitle.get_text() == "my-run: learning curves"
    plots._pyplot().close(figure)


def test_text_from_files_is_not_math(tmp_path: Path) -> None:
    target = tmp_path / "m.png"
    plots.confusion_matrix([[1, 0], [0, 1]], ["$x", "y$"], target, data_name="a$b.csv")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("data_name", "title"), [("test", "confusion matrix (test)"), ("new.csv", "confusion matrix (new.csv)")])  # fmt: skip
def test_the_confusion_matrix_names_its_data(data_name: str, title: str) -> None:
    figure = plots.confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"], data_name)
    assert figure.axes[0].get_title() == title
    plots._pyplot().close(figure)
