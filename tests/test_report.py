"""HTML reports built from hand-written run folders: sections, escaping, missing files, the CLI.

No training and no browser here (tests/test_report_browser.py opens real reports in Chromium).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dltool.config import defaulted_keys, load_config, with_name
from dltool.evaluation import worst_mistakes
from dltool.report import charts
from dltool.report.html import script_json
from dltool.rundir import (
    CONFIG,
    HISTORY,
    INTERNALS,
    METRICS,
    MISTAKES,
    PREDICTIONS,
    REPORT,
    RUN_JSON,
    write_csv,
    write_json,
    write_npz,
)

HOSTILE = '<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">'

RUN_SECTIONS = ("headline", "curves", "classes", "mistakes", "probabilities", "layers", "config", "about")  # fmt: skip


def make_run(folder: Path, task: str = "binary", hostile: bool = False, epochs: int = 6) -> Path:
    """A completed run folder written by hand: every file a report reads, tiny and exact."""
    folder.mkdir(parents=True)
    classes = ["fail", HOSTILE if hostile else "pass"]
    features = ["age", "hours" + (HOSTILE if hostile else "")]
    name = ("tiny" + HOSTILE) if hostile else "tiny"
    history = [
        [e, 1 / e, 0.5 + e / 40, 1.2 / e + 0.01 * e, 0.5 + e / 50, 0.001, 0.05]
        for e in range(1, epochs + 1)
    ]
    write_csv(
        folder / HISTORY,
        ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "duration_s"],
        history,
    )
    rng = np.random.default_rng(0)
    if task == "regression":
        rows = [[i, f"{t:.6f}", f"{t + e:.6f}", f"{e:.6f}"] for i, (t, e) in enumerate(zip(rng.normal(size=20), rng.normal(size=20), strict=True))]  # fmt: skip
        write_csv(folder / PREDICTIONS, ["index", "true", "predicted", "error"], rows)
        metrics: dict[str, Any] = {"test": {"loss": 0.7, "mean_absolute_error": 0.6}}
    else:
        p = rng.uniform(size=20)
        true = [classes[i % 2] for i in range(20)]
        rows = [
            [
                i,
                true[i],
                classes[int(p[i] > 0.5)],
                true[i] == classes[int(p[i] > 0.5)],
                f"{1 - p[i]:.6f}",
                f"{p[i]:.6f}",
            ]
            for i in range(20)
        ]
        header = ["index", "true", "predicted", "correct", *(f"prob_{c}" for c in classes)]
        write_csv(folder / PREDICTIONS, header, rows)
        report = {
            "per_class": {
                c: {"precision": 0.5, "recall": 0.4, "f1-score": 0.44, "support": 10}
                for c in classes
            },
            "macro_avg": {"precision": 0.5, "recall": 0.4, "f1-score": 0.44, "support": 20},
            "confusion_matrix": {
                "labels": classes,
                "rows_true_columns_predicted": [[6, 4], [5, 5]],
            },
        }
        metrics = {"test": {"loss": 0.69, "accuracy": 0.55}, "train": {"loss": 0.5, "accuracy": 0.8}, "test_classes": report}  # fmt: skip
    write_json(folder / METRICS, metrics)
    write_npz(folder / MISTAKES, index=np.array([3, 1]), x=np.array([[20.0, 3.5], [22.0, 1.25]]))
    config = {
        "name": name,
        "seed": 3,
        "data": {"source": "student", "n_train": 200, "labels": HOSTILE if hostile else "rule"},
        "training": {"loss": "binary_crossentropy", "epochs": epochs, "batch_size": 32},
    }
    (folder / CONFIG).write_text(yaml.safe_dump(config), encoding="utf-8")
    info = {
        "status": "completed",
        "name": name,
        "task": task,
        "seed": 3,
        "params": 48,
        "epochs_completed": epochs,
        "duration_s": 1.5,
        "feature_names": features,
        "class_names": classes,
        "layers": [
            {
                "name": "dense" + (HOSTILE if hostile else ""),
                "type": "Dense",
                "output_shape": [None, 1],
                "params": 48,
            }
        ],
        "config_defaults": ["training.batch_size", "data.labels"],
        "versions": {"dltool": "0.1.0", "keras": HOSTILE if hostile else "3.15.1"},
        "timings": {"fit": 1.0, "save": 0.1},
        "weights_from_epoch": 3,
        "resumed": [{"at": "2026-12-02T10:00:00+00:00", "from_epoch": 2}],
        "command": ["dltool", "train", "x.yaml"],
    }
    write_json(folder / RUN_JSON, info)
    return folder


def write_report(folder: Path) -> str:
    from dltool.report import write_run_report

    return write_run_report(folder).read_text(encoding="utf-8")


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


def test_a_binary_run_has_every_section(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path / "run"))
    assert section_ids(page) == list(RUN_SECTIONS)
    assert page.count('<svg class="chart"') == 3  # loss, accuracy, the probability histogram
    assert ">best val_loss<" in page
    assert ">weights kept<" in page
    assert ">resumed<" in page
    assert ">20.0000</td>" in page
    assert ">3.5000</td>" in page
    assert "default</span>" in page  # training.batch_size was filled in
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page
    assert len(page.encode()) < 200_000


def test_a_regression_run_has_no_classes_but_its_largest_errors(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path / "run", task="regression"))
    assert section_ids(page) == ["headline", "curves", "mistakes", "layers", "config", "about"]
    assert ">error</th>" in page
    assert "The largest errors" in page


def test_values_from_the_run_folder_are_text_never_markup(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path / "run", hostile=True))
    assert page.count("<script") == 2  # the data block and the page's own script
    assert "<img src=x" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page  # shown as typed
    data = page.split('<script type="application/json" id="report-data">')[1].split("</script>")[0]
    assert "<" not in data
    assert json.loads(data)  # still valid JSON


def test_script_json_cannot_close_its_element_and_has_no_nan() -> None:
    encoded = script_json({"a": "</script><!--", "b": float("nan"), "c": [float("inf")]})
    assert "<" not in encoded
    assert ">" not in encoded
    assert json.loads(encoded) == {"a": "</script><!--", "b": None, "c": [None]}


def test_a_folder_with_only_run_json_still_gets_a_report(tmp_path: Path) -> None:
    folder = tmp_path / "crashed"
    folder.mkdir()
    write_json(folder / RUN_JSON, {"status": "running", "name": "crashed"})
    page = write_report(folder)
    assert section_ids(page) == ["headline", "curves", "about"]
    assert "no epochs recorded" in page


@pytest.mark.parametrize(
    ("where", "note"),
    [
        (
            {"measured_in": "training steps"},
            "dead units and gradient norms over every training step of each epoch",
        ),
        ({"probe_rows": 64}, "Measured after each epoch on the same 64 training examples."),
    ],
    ids=["tensorflow", "probe"],
)
def test_inside_the_model_says_what_it_was_measured_on(tmp_path: Path, where: dict[str, Any], note: str) -> None:  # fmt: skip
    folder = tmp_path / "run"
    folder.mkdir()
    write_json(folder / RUN_JSON, {"status": "completed", "name": "inside"})
    recorded = {"epochs": [1, 2], "dead_relu": {"dense": [0.0, 0.5]}, "gradient_norms": {"dense": [0.1, 0.2]}}  # fmt: skip
    write_json(folder / INTERNALS, {**where, **recorded})
    page = write_report(folder)
    assert "inside" in section_ids(page)
    assert note in page


def test_a_run_without_mistakes_npz_lists_its_mistakes_without_inputs(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "run")
    (folder / MISTAKES).unlink()
    page = write_report(folder)
    assert "mistakes.npz is missing" in page
    assert "<h2>Worst mistakes</h2>" in page


def test_mistakes_are_matched_by_their_position_in_the_split(tmp_path: Path) -> None:
    """A streamed split may leave out an image that failed to decode: predictions.csv's index
    then skips it, and mistakes.npz names examples by that index, not by the CSV's row."""
    import csv

    folder = make_run(tmp_path / "run")
    with open(folder / PREDICTIONS, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    del rows[1 + 2]  # the example at position 2 could not be read
    write_csv(folder / PREDICTIONS, rows[0], rows[1:])
    write_npz(folder / MISTAKES, index=np.array([3]), x=np.array([[20.0, 3.5]]))
    page = write_report(folder)
    mistakes = page.split('id="mistakes"')[1].split("</section>")[0]
    (row,) = re.findall(r"<tr>(.*?)</tr>", mistakes.split("<tbody>")[1])
    assert re.match(r'<td class=num data-sort="3">3</td>', row)  # position 3, the 3rd CSV row
    assert re.findall(r"<td>([^<]*)</td>", row)[0] == rows[1 + 2][1]  # its true class (pass),
    assert ">20.0000</td>" in row  # not the next CSV row's (position 4: fail)


def test_image_mistakes_are_thumbnails(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "run")
    images = np.arange(2 * 8 * 8, dtype="float32").reshape(2, 8, 8, 1)
    write_npz(folder / MISTAKES, index=np.array([3, 1]), x=images)
    page = write_report(folder)
    assert page.count('<img alt="test example') == 2
    assert "data:image/png;base64," in page


def test_png_thumbnails_decode() -> None:
    import base64
    import io

    from PIL import Image

    for shape in [(5, 7), (5, 7, 1), (5, 7, 3)]:
        array = np.arange(np.prod(shape), dtype="float64").reshape(shape)
        uri = charts.png_data_uri(array)
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert image.size == (7, 5)
        pixels = np.asarray(image)
        assert pixels.min() == 0
        assert pixels.max() == 255


@pytest.mark.parametrize(("low", "high"), [(1, 3), (1, 7), (1, 250), (0, 1000)])
def test_epoch_ticks_are_whole_numbers(low: int, high: int) -> None:
    ticks = charts.integer_ticks(low, high)
    assert all(isinstance(t, int) for t in ticks)
    assert 2 <= len(ticks) <= 12 or high - low < 2
    assert ticks == sorted(set(ticks))


def test_many_epochs_get_no_dot_on_each_point() -> None:
    few = charts.line_chart("a", "loss", list(range(1, 11)), [charts.Series("t", [1.0] * 10, "#000")])  # fmt: skip
    many = charts.line_chart("b", "loss", list(range(1, 301)), [charts.Series("t", [1.0] * 300, "#000")])  # fmt: skip
    assert few.html.count("<circle") == 10
    assert many.html.count("<circle") == 0


def test_a_long_history_is_thinned_not_written_whole(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path / "run", epochs=20_000))
    assert "epoch 20,000" not in page
    assert len(page.encode()) < 400_000  # 20,000 epochs in 3 charts, thinned to 1,000 points
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert data["charts"]["curve-loss"]["x"][-1] == 20_000  # the last epoch is kept


def test_worst_mistakes_most_confident_first() -> None:
    wrong = np.array([True, False, True, True, True])
    confidence = np.array([0.6, 0.99, 0.9, 0.6, np.nan])
    assert worst_mistakes(wrong, confidence, 3).tolist() == [
        4,
        2,
        0,
    ]  # NaN is worst, then ties by index


def test_defaulted_keys_name_what_the_file_left_out(write_config: Callable[..., Path]) -> None:
    from conftest import tiny_config

    config = load_config(write_config(tiny_config()))
    keys = defaulted_keys(config)
    assert "training.optimizer" in keys
    assert "training.metrics" in keys
    assert "seed" not in keys
    assert "training.epochs" not in keys
    assert "model.layers[1].units" not in keys
    assert "model.layers[1].use_bias" in keys
    assert defaulted_keys(with_name(config, "other")) == keys  # --name keeps them


def test_cli_report_rewrites_the_page(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    folder = make_run(tmp_path / "run")
    result = run_cli("report", folder)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"report {folder / REPORT}\n"
    assert (folder / REPORT).is_file()
    inside = run_cli("report", folder / HISTORY, "--output", tmp_path / "elsewhere.html")
    assert inside.exit_code == 0, inside.output
    assert "<h2>Learning curves</h2>" in (tmp_path / "elsewhere.html").read_text(encoding="utf-8")


def test_cli_report_of_several_runs_compares_them(tmp_path: Path, run_cli: Callable[..., Any]) -> None:  # fmt: skip
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b", epochs=9)
    target = tmp_path / "cmp.html"
    result = run_cli("report", first, second, "--output", target)
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    assert section_ids(page) == ["differences", "metrics", "curves"]
    assert "training.epochs" in page
    assert page.count('<svg class="chart"') == 2  # loss and accuracy, both runs on each
    compared = run_cli("runs", "compare", first, second, "--html", tmp_path / "c2.html")
    assert compared.exit_code == 0, compared.output
    assert section_ids((tmp_path / "c2.html").read_text(encoding="utf-8")) == ["differences", "metrics", "curves"]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "missing", "no such run folder", id="missing"),
        pytest.param(lambda p: p, "not a dltool run folder (no run.json)", id="not-a-run"),
    ],
)
def test_cli_report_refuses_what_is_not_a_run(tmp_path: Path, run_cli: Callable[..., Any], make: Callable[[Path], Path], message: str) -> None:  # fmt: skip
    result = run_cli("report", make(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_big_predictions_file_is_read_as_a_sample_plus_the_worst_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import numpy as np

    from dltool.report import run as page

    monkeypatch.setattr(page, "MAX_PREDICTION_ROWS", 3)
    rows = [[i, "a", "b" if i % 4 else "a", i % 4 == 0, 0.5, 0.5] for i in range(10)]
    write_csv(tmp_path / PREDICTIONS, ["index", "true", "predicted", "correct", "prob_a", "prob_b"], rows)  # fmt: skip
    np.savez(tmp_path / MISTAKES, index=np.array([7, 9]), x=np.zeros((2, 3)))
    problems: list[str] = []
    kept = page._prediction_rows(tmp_path, problems)
    assert [row["index"] for row in kept] == ["0", "1", "2", "7", "9"]
    assert problems == [
        f"{PREDICTIONS}: 10 rows; this page uses the first 3 (the test split is in random order) "
        "and the worst mistakes"
    ]
