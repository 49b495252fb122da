"""Reports as a user sees them: opened in headless Chromium (Debian's ``chromium``), driven by
Playwright. Two tiny runs are trained once for the module (one also writes TensorBoard logs);
one browser renders every page.

Chromium comes from ``apt-get install -y chromium`` (.ci/run installs it); Playwright's own
browser download is not used.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config
from dltool.rundir import REPORT, TENSORBOARD

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = pytest.mark.slow  # trains, and starts Chromium


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A binary table run (validation, early stopping, TensorBoard) and a 3-class image run."""
    from dltool.api import train

    folder = tmp_path_factory.mktemp("report-runs")
    binary = tiny_config(
        name="binary",
        data={"n_train": 240, "n_test": 60, "validation_split": 0.25},
        training={
            "epochs": 6,
            "metrics": ["accuracy"],
            "early_stopping": {"monitor": "val_loss", "patience": 2},
            "tensorboard": True,
            "record_internals": True,
        },
    )
    images = tiny_config(
        name="images",
        model={
            "input_shape": [12, 12, 1],
            "layers": [
                {"type": "rescaling", "scale": "1/255"},
                {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                {"type": "flatten"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        training={"loss": "sparse_categorical_crossentropy", "epochs": 2, "record_internals": True},
    )
    images["data"] = {"source": "shapes", "n_train": 90, "n_test": 30, "image_size": 12, "validation_split": 0.2}  # fmt: skip
    return {
        "binary": train(binary, runs_dir=folder, quiet=True).path,
        "images": train(images, runs_dir=folder, quiet=True).path,
    }


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium with a fresh, empty profile for the whole module."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


class Opened:
    """A page opened from file://, with everything it logged or requested."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def section_ids(self) -> list[str]:
        return self.page.eval_on_selector_all("section", "all => all.map(s => s.id)")

    def check_offline_and_clean(self) -> None:
        assert self.errors == []
        assert self.requests == [self.url]  # the page itself; nothing from the network
        assert self.dialogs == []

    def check_charts_drawn(self, count: int) -> None:
        charts = self.page.locator("svg.chart")
        assert charts.count() == count
        for index in range(count):
            chart = charts.nth(index)
            box = chart.bounding_box()
            assert box is not None
            assert box["width"] > 200
            assert box["height"] > 150
            assert chart.locator("polyline, rect.bar, circle.dot").count() > 0

    def check_screenshot_not_blank(self) -> None:
        from PIL import Image

        picture = Image.open(io.BytesIO(self.page.screenshot(full_page=True))).convert("RGB")
        colors = picture.getcolors(maxcolors=1_000_000) or []
        assert len(colors) > 50  # text, lines, tiles: far more than a blank page's one or two
        assert picture.height > 1500

    def hover_first_chart(self) -> str:
        chart = self.page.locator("svg.chart").first
        box = chart.bounding_box()
        assert box is not None
        chart.hover(position={"x": box["width"] * 0.6, "y": box["height"] * 0.5})  # scrolls to it
        tooltip = self.page.locator("#tooltip")
        tooltip.wait_for(state="visible", timeout=5000)
        return tooltip.text_content() or ""


RUN_SECTIONS = {
    "binary": [
        "headline",
        "curves",
        "classes",
        "mistakes",
        "probabilities",
        "inside",
        "layers",
        "config",
        "about",
    ],
    "images": ["headline", "curves", "classes", "mistakes", "inside", "layers", "config", "about"],
}


@pytest.mark.parametrize("kind", ["binary", "images"])
def test_a_trained_runs_report_in_chromium(runs: dict[str, Path], browser: Any, kind: str) -> None:
    report = runs[kind] / REPORT
    assert report.stat().st_size < 1_000_000
    opened = Opened(browser, report)
    assert opened.section_ids() == RUN_SECTIONS[kind]
    # loss, accuracy, (the probability histogram,) dead ReLUs, gradient norms
    opened.check_charts_drawn(5 if kind == "binary" else 4)
    assert opened.page.locator("#inside svg.ridges polygon").count() >= 2
    opened.check_screenshot_not_blank()
    shown = opened.hover_first_chart()
    assert re.fullmatch(r"epoch \d+\ntrain: \d\.\d{4}\nvalidation: \d\.\d{4}", shown), shown
    if kind == "images":
        thumbnails = opened.page.locator(".mistake img")
        assert thumbnails.count() >= 1
        assert thumbnails.first.evaluate("img => img.complete && img.naturalWidth") == 12
        assert opened.page.locator("#inside img.filter").count() == 4  # conv2d's 4 filters
        assert opened.page.locator("#inside img.map").count() == 1 + 4  # the image, 4 maps
        for image in opened.page.locator("#inside img").all():
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    table = opened.page.locator("#classes table.sortable")
    table.locator("th").nth(2).click()  # recall, ascending
    recalls = [float(t) for t in table.locator("tbody tr td:nth-child(3)").all_text_contents()]
    assert recalls == sorted(recalls)
    table.locator("th").nth(2).click()  # and descending
    recalls = [float(t) for t in table.locator("tbody tr td:nth-child(3)").all_text_contents()]
    assert recalls == sorted(recalls, reverse=True)
    opened.check_offline_and_clean()


def test_internals_are_recorded_every_epoch(runs: dict[str, Path]) -> None:
    import json

    import numpy as np

    for kind, relu_layers in (("binary", ["dense"]), ("images", ["conv2d"])):
        recorded = json.loads((runs[kind] / "internals.json").read_text(encoding="utf-8"))
        epochs = len((runs[kind] / "history.csv").read_text(encoding="utf-8").splitlines()) - 1
        assert recorded["epochs"] == list(range(1, epochs + 1))
        assert list(recorded["dead_relu"]) == relu_layers
        assert all(0 <= f <= 1 for f in recorded["dead_relu"][relu_layers[0]])
        for name, norms in recorded["gradient_norms"].items():
            assert len(norms) == epochs, name
            assert all(np.isfinite(n) and n > 0 for n in norms), name
        for histogram in recorded["histograms"].values():
            assert len(histogram["counts"]) == epochs
            assert len({sum(c) for c in histogram["counts"]}) == 1  # every weight, every epoch
    with np.load(runs["images"] / "internals.npz") as pictures:
        assert pictures["filters"].shape == (3, 3, 1, 4)
        assert pictures["maps_0"].shape == (10, 10, 4)


def test_tensorboard_logs_hold_the_history(runs: dict[str, Path]) -> None:
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    with open(runs["binary"] / "history.csv", encoding="utf-8") as handle:
        history = list(csv.DictReader(handle))
    for split, prefix in (("train", ""), ("validation", "val_")):
        events = EventAccumulator(str(runs["binary"] / TENSORBOARD / split))
        events.Reload()
        logged = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_loss")]  # fmt: skip
        assert logged == pytest.approx([float(row[f"{prefix}loss"]) for row in history], rel=1e-6)


def test_hostile_names_are_shown_not_run(tmp_path: Path, browser: Any) -> None:
    from dltool.report import write_run_report
    from test_report import HOSTILE, make_run

    report = write_run_report(make_run(tmp_path / "run", hostile=True))
    opened = Opened(browser, report)
    assert opened.page.evaluate("typeof window.pwned") == "undefined"
    assert opened.page.locator("img[src=x]").count() == 0
    assert HOSTILE in opened.page.locator("h1").text_content()  # the name, as typed
    assert HOSTILE in opened.page.locator("#classes").inner_text()
    opened.check_offline_and_clean()


def test_a_comparison_in_chromium(runs: dict[str, Path], browser: Any, tmp_path: Path) -> None:
    from dltool.report import write_comparison

    second = tmp_path / "binary-copy"
    shutil.copytree(runs["binary"], second)
    page = write_comparison([runs["binary"], second, runs["images"]], tmp_path / "cmp.html")
    opened = Opened(browser, page)
    assert opened.section_ids() == ["differences", "metrics", "curves"]
    opened.check_charts_drawn(2)
    shown = opened.hover_first_chart()
    assert shown.startswith("epoch ")
    assert "binary-copy validation: " in shown
    opened.check_offline_and_clean()


def test_a_sweep_report_in_chromium(tmp_path: Path, browser: Any) -> None:
    from dltool.report import write_sweep_report
    from test_report_sweep import make_sweep

    opened = Opened(browser, write_sweep_report(make_sweep(tmp_path / "sweep")))
    assert opened.section_ids() == ["best", "trials", "parallel", "params", "gap"]
    opened.check_charts_drawn(2)  # the metric against each of the two parameters
    assert opened.page.locator("svg.parallel polyline").count() == 11
    shown = opened.hover_first_chart()
    assert re.fullmatch(r"trial \d+: .*\nmetric: \d\.\d{4}", shown), shown
    table = opened.page.locator("#trials table.sortable")
    column = table.locator("th", has_text="validation.loss")
    column.click()
    cells = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.cells[0].textContent)")
    assert cells[0] == "7"  # ascending validation.loss: the best trial first
    column.click()
    losses = [
        float(t)
        for t in opened.page.locator("#trials tbody tr td:nth-child(7)").all_text_contents()
        if t != "-"
    ]
    assert losses == sorted(losses, reverse=True)
    assert opened.page.locator("#trials tr.best td").first.text_content() == "7"
    opened.check_offline_and_clean()
