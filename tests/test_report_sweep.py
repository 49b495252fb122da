"""The sweep report and sweep.png, from a sweep folder written by hand (no training)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from conftest import tiny_config
from dltool import sweep as sweeps
from dltool.sweep import load_sweep, plan
from dltool.sweep.folder import REPORT, SWEEP_FILE, plot_figure

LONG = "a-very-long-value-that-would-eat-the-figure-" * 2


def make_sweep(folder: Path) -> Path:
    """A finished sweep folder: 3 x 2 grid, 2 repeats each, one failed trial; trial 7 is best."""
    folder.mkdir(parents=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(tiny_config()), encoding="utf-8")
    spec = {
        "name": "s",
        "base": "base.yaml",
        "metric": "validation.loss",
        "repeats": 2,
        "grid": {
            "training.optimizer.learning_rate": [0.0001, 0.01, 0.1],
            "model.layers[1].activation": ["relu", LONG],
        },
    }
    (folder / "source.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    sweep = load_sweep(folder / "source.yaml")
    recorded = {**sweep.model_dump(mode="json"), "name": "s<b>"}  # a hand-edited folder: text only
    (folder / SWEEP_FILE).write_text(yaml.safe_dump(recorded), encoding="utf-8")
    directory = sweeps.SweepDir(folder, sweep, plan(sweep, base_seed=0), "tiny")
    for trial in directory.trials:
        if trial.number == 4:
            directory.results[4] = {"status": "failed", "run": "", "error": "loss became nan", "duration_s": 0.5}  # fmt: skip
            continue
        loss = 0.2 + abs(trial.number - 7) / 20
        directory.results[trial.number] = {
            "status": "completed",
            "run": "",
            "metrics": {"train": {"loss": loss - 0.05}, "validation": {"loss": loss}},
            "duration_s": 1.0,
        }
    directory.write()
    return folder


def test_a_sweep_report_has_its_sections(tmp_path: Path) -> None:
    from dltool.report import write_sweep_report

    page = write_sweep_report(make_sweep(tmp_path / "sweep")).read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)"', page) == ["best", "trials", "parallel", "params", "gap"]  # fmt: skip
    assert page.count('<tr class="best">') == 1  # trial 7
    assert ">failed: loss became nan<" in page
    assert page.count("<polyline") == 11  # one line per completed trial
    assert "Sweep s&lt;b&gt;" in page
    assert '<table class="values">' in page  # the long activation value, named #2 on the axes
    trials = page.split('id="trials"')[1].split("</section>")[0]
    assert re.findall(r"<th[^>]*>repeat</th>", trials)


def test_cli_report_of_a_sweep_folder(tmp_path: Path, run_cli: Any) -> None:
    folder = make_sweep(tmp_path / "sweep")
    result = run_cli("report", folder)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"report {folder / REPORT}\n"


def test_sweep_png_keeps_long_values_out_of_the_ticks(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "sweep")
    sweep = load_sweep(folder / "source.yaml")
    directory = sweeps.SweepDir(folder, sweep, plan(sweep, base_seed=0), "tiny")
    directory.results = {t.number: {"status": "completed", "run": "", "duration_s": 1.0, "metrics": {"train": {"loss": 0.3}, "validation": {"loss": 0.4 + t.number / 100}}} for t in directory.trials if t.number != 4}  # fmt: skip
    figure = plot_figure(directory)
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == [str(n) for n in sorted(directory.results)]  # fmt: skip
    assert axis.get_position().height > 0.6  # the bars keep the figure, not the labels
    assert any("best: trial 1" in t.get_text() for t in axis.get_legend().get_texts())
