"""`dltool schema`: the JSON Schema editors complete from, checked with jsonschema against every
shipped config, and the copies in docs/ that the shipped configs point at."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml

from conftest import CONFIGS, REPO, SHIPPED_CONFIGS
from dltool.editor_schema import SHIPPED, json_schema, schema_text

EXPERIMENTS = SHIPPED_CONFIGS
SWEEPS = sorted((CONFIGS / "sweeps").glob("*.yaml"))
LINE = re.compile(r"# yaml-language-server: \$schema=(\S+)")


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(kind: str, document: Any) -> list[str]:
    return [error.message for error in validator(kind).iter_errors(document)]


@pytest.mark.parametrize(
    ("kind", "path"),
    [("experiment", p) for p in EXPERIMENTS] + [("sweep", p) for p in SWEEPS],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_every_shipped_config_validates_and_points_at_its_schema(kind: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert problems(kind, yaml.safe_load(text)) == []
    match = LINE.fullmatch(text.splitlines()[0])
    assert match, f"{path}: the first line should be # yaml-language-server: $schema=..."
    assert (path.parent / match.group(1)).resolve() == (REPO / SHIPPED[kind]).resolve()


@pytest.mark.parametrize("kind", ["experiment", "sweep"])
def test_the_copies_in_docs_are_current(kind: str) -> None:
    shipped = (REPO / SHIPPED[kind]).read_text(encoding="utf-8")
    flag = " --sweep" if kind == "sweep" else ""
    assert shipped == schema_text(kind), f"regenerate: dltool schema{flag} > {SHIPPED[kind]}"


SMALL = {
    "data": {"source": "student"},
    "model": {"input_shape": [3], "layers": [{"type": "dense", "units": 1}]},
    "training": {"loss": "binary_crossentropy"},
}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param({**SMALL, "trainin": {}}, "'trainin' was unexpected", id="unknown-key"),
        pytest.param(
            {**SMALL, "training": {"loss": "mse"}}, "'mse' is not one of", id="bad-choice"
        ),
        pytest.param(
            {**SMALL, "training": {"loss": "binary_crossentropy", "epochs": "5"}},
            "'5' is not of type 'integer'",
            id="bad-type",
        ),
        pytest.param(
            {"data": SMALL["data"]}, "'model' is a required property", id="missing-section"
        ),
        pytest.param(
            {"extends": "a.yaml", "training": {"epoch": 5}},
            "'epoch' was unexpected",
            id="extends-unknown-key",
        ),
    ],
)
def test_the_schema_catches_what_validate_catches(document: dict[str, Any], expected: str) -> None:
    found = problems("experiment", document)
    assert any(expected in message for message in found), found


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(SMALL, id="no-name"),  # the file's name is the default
        pytest.param({"extends": "a.yaml", "training": {"epochs": 5}}, id="extends-partial"),
        pytest.param(
            {**SMALL, "training": {"loss": "binary_crossentropy", "optimizer": "sgd"}},
            id="optimizer-shorthand",
        ),
        pytest.param(
            {
                **SMALL,
                "model": {
                    "input_shape": [8, 8, 1],
                    "layers": [
                        {"type": "rescaling", "scale": "1/255"},
                        {"type": "conv2d", "filters": 2, "kernel_size": 3},
                        {"type": "max_pooling2d", "pool_size": [2, 2]},
                    ],
                },
            },
            id="shorthands",
        ),
    ],
)
def test_what_validate_accepts_the_schema_accepts(document: dict[str, Any]) -> None:
    assert problems("experiment", document) == []


def test_the_optimizer_shorthand_names_every_optimizer() -> None:
    from dltool.optimizers import Optimizer, OptimizerName

    members = get_args(get_args(Optimizer)[0])
    assert set(get_args(OptimizerName)) == {get_args(m.model_fields["name"].annotation)[0] for m in members}  # fmt: skip


def test_cli_schema_prints_it(run_cli: Callable[..., Any]) -> None:
    result = run_cli("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "dltool experiment file"
    sweep = run_cli("schema", "--sweep")
    assert json.loads(sweep.stdout)["title"] == "dltool sweep file"
