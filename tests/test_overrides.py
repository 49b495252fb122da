"""`--set key=value` overrides and `extends: base.yaml` (overrides.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_config
from dltool.config import load_config
from dltool.errors import ConfigError

Cli = Callable[..., Any]


@pytest.mark.slow
def test_set_overrides_are_validated_and_recorded(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config(tiny_config())
    result = run_cli("train", path, "--runs-dir", tmp_path / "runs", "--set", "training.epochs=2", "--set", "model.layers[1].units=6", "--set", "training.optimizer={name: sgd, momentum: 0.9}")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["training"]["epochs"] == 2
    assert resolved["model"]["layers"][1]["units"] == 6
    assert resolved["training"]["optimizer"]["momentum"] == 0.9
    info = json.loads((run / "run.json").read_text())
    assert info["overrides"] == [
        "training.epochs=2",
        "model.layers[1].units=6",
        "training.optimizer={name: sgd, momentum: 0.9}",
    ]
    assert info["epochs_completed"] == 2


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        pytest.param(
            "training.epochs=0",
            r"--set training\.epochs=0: training\.epochs: out of range \(received 0; expected a number >= 1\)",
            id="invalid-value",
        ),
        pytest.param(
            "training.epoch=5",
            r"--set training\.epoch=5: training\.epoch: unknown key, did you mean 'epochs'\?",
            id="unknown-key",
        ),
        pytest.param(
            "model.layers[9].units=5",
            r"--set model\.layers\[9\]\.units=5: model\.layers has 3 items \(expected an index 0\.\.2\)",
            id="index-out-of-range",
        ),
        pytest.param(
            "training.epochs[0]=5",
            r"--set training\.epochs\[0\]=5: training\.epochs is not a list",
            id="index-into-number",
        ),
        pytest.param(
            "model.layer[0].units=5",
            r"--set model\.layer\[0\]\.units=5: model\.layer is not in the config, did you mean 'layers'\?",
            id="missing-list",
        ),
        pytest.param(
            "trainin.epochs=5",
            r"--set trainin\.epochs=5: trainin: unknown key, did you mean 'training'\?",
            id="misspelled-section",
        ),
        pytest.param(
            "training.early_stoping.patience=2",
            r"--set training\.early_stoping\.patience=2: training\.early_stoping: unknown key, did you mean 'early_stopping'\?",
            id="misspelled-middle-key",
        ),
        pytest.param("epochs", r"--set epochs: expected KEY=VALUE", id="no-equals"),
        pytest.param(
            "training..epochs=1",
            r"--set training\.\.epochs=1: expected KEY=VALUE with KEY like training\.epochs",
            id="bad-path",
        ),
        pytest.param(
            "training.epochs=[1",
            r"--set training\.epochs=\[1: the value is not valid YAML",
            id="bad-yaml",
        ),
    ],
)
def test_bad_overrides(
    run_cli: Cli, write_config: Callable[..., Path], tmp_path: Path, assignment: str, message: str
) -> None:
    result = run_cli(
        "train", write_config(tiny_config()), "--runs-dir", tmp_path / "runs", "--set", assignment
    )
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert re.match(f"error: {message}", result.stderr), result.stderr
    assert not (tmp_path / "runs").exists()


def test_extends_deep_merges(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump(tiny_config(training={"epochs": 3, "batch_size": 16}))
    )
    (tmp_path / "exp.yaml").write_text("extends: base.yaml\ntraining: {epochs: 1}\n")
    config = load_config(tmp_path / "exp.yaml")
    assert (config.training.epochs, config.training.batch_size) == (1, 16)
    assert config.name == "exp"  # named after the file that was run, not its base
    assert len(config.model.layers) == 3


def test_extends_keeps_data_paths_relative_to_their_file(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    base = tiny_config(data={"source": "csv", "path": "table.csv", "target": "y"})
    for key in ("n_train", "n_test", "labels"):
        base["data"].pop(key)
    (tmp_path / "shared" / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "exp.yaml").write_text("extends: shared/base.yaml\n")
    assert load_config(tmp_path / "exp.yaml").data.path == str(tmp_path / "shared" / "table.csv")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param(
            {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"},
            r"/b\.yaml: extends: a\.yaml leads back to a file already extended \(a\.yaml -> b\.yaml -> a\.yaml\)",
            id="cycle",
        ),
        pytest.param(
            {"a.yaml": "extends: a.yaml\n"},
            r"a\.yaml: extends: a\.yaml leads back to a file already extended \(a\.yaml -> a\.yaml\)",
            id="self",
        ),
        pytest.param(
            {"a.yaml": "extends: nope.yaml\n"},
            r"a\.yaml: extends: nope\.yaml not found",
            id="missing",
        ),
        pytest.param(
            {"a.yaml": "extends: [x]\n"},
            r"a\.yaml: extends: expected the path of another experiment file \(received \['x'\]\)",
            id="not-a-path",
        ),
        pytest.param(
            {"a.yaml": "extends: b.yaml\n", "b.yaml": "a: 1\na: 2\n"},
            r"b\.yaml: line 2: duplicate key 'a'",
            id="bad-base",
        ),
    ],
)
def test_bad_extends(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "a.yaml")
    (line,) = caught.value.lines
    assert re.search(message, line), line
