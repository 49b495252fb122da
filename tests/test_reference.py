"""docs/reference.md is generated from the code and must match it; it covers every key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dltool import reference
from dltool.config import ExperimentConfig
from dltool.errors import ExitCode
from dltool.layers import LAYERS, LayerSpec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return reference.render()


def test_docs_reference_is_up_to_date(rendered: str) -> None:
    committed = DOCS.read_text(encoding="utf-8")
    assert committed == rendered, (
        f"{DOCS} is out of date with the code; regenerate it with: {reference.REGENERATE}"
    )


def _every_model() -> list[type[BaseModel]]:
    return reference._all_models(ExperimentConfig) + [
        m for spec in LAYERS.values() for m in reference._all_models(spec)
    ]


@pytest.mark.parametrize("model", _every_model(), ids=lambda m: m.__name__)
def test_every_key_of_every_model_is_documented(model: type[BaseModel], rendered: str) -> None:
    missing = [name for name in model.model_fields if f"`{name}" not in rendered and f".{name}`" not in rendered]  # fmt: skip
    assert not missing, f"{model.__name__}: keys missing from the reference: {missing}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold, through Optional, Annotated, list and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _discriminator(info: FieldInfo) -> str | None:
    """The tag key of a union field, on the field or inside its ``Annotated`` metadata."""
    found = [info.discriminator] if isinstance(info.discriminator, str) else []
    stack = [info.annotation]
    while stack:
        annotation = stack.pop()
        found += [m.discriminator for m in getattr(annotation, "__metadata__", ()) if isinstance(m, FieldInfo) and isinstance(m.discriminator, str)]  # fmt: skip
        stack += list(get_args(annotation))
    return found[0] if found else None


def _unions() -> list[tuple[str, str, list[type[BaseModel]]]]:
    """(dotted path, tag key, members) of every union of mappings except the layers."""
    found = []
    queue: list[tuple[str, type[BaseModel]]] = [("", ExperimentConfig)]
    while queue:
        prefix, model = queue.pop(0)
        for name, info in model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            members = _models_in(info.annotation)
            if any(issubclass(m, LayerSpec) for m in members):
                continue  # test_every_layer_is_documented
            tag = _discriminator(info)
            if len(members) > 1 and tag:
                found.append((path, tag, members))
            queue += [(path, m) for m in members]
    return found


def _dotted_paths() -> list[str]:
    """Every key under ExperimentConfig as a dotted path; union tags and layer keys excluded."""
    tags = {(path, tag) for path, tag, _ in _unions()}
    paths = []
    queue: list[tuple[str, type[BaseModel]]] = [("", ExperimentConfig)]
    while queue:
        prefix, model = queue.pop(0)
        for name, info in model.model_fields.items():
            if (prefix, name) in tags:
                continue  # shown in the heading: "with `source: student`"
            path = f"{prefix}.{name}" if prefix else name
            paths.append(path)
            members = _models_in(info.annotation)
            if not any(issubclass(m, LayerSpec) for m in members):
                queue += [(path, m) for m in members]
    return paths


def test_every_dotted_key_is_documented(rendered: str) -> None:
    """Nested keys appear with their full path, e.g. ``training.early_stopping.patience``."""
    paths = _dotted_paths()
    assert "training.early_stopping.patience" in paths  # the walk reaches nested sections
    missing = sorted({path for path in paths if f"`{path}`" not in rendered})
    assert not missing, f"dotted keys missing from the reference: {missing}"


def test_every_union_member_is_documented(rendered: str) -> None:
    unions = _unions()
    assert {path for path, _, _ in unions} >= {"data", "training.optimizer"}
    for path, tag, members in unions:
        for member in members:
            for value in get_args(member.model_fields[tag].annotation):
                assert f"## `{path}` with `{tag}: {value}`" in rendered


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_is_documented(name: str, rendered: str) -> None:
    spec = LAYERS[name]
    assert f"### `{name}`" in rendered
    section = rendered.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    assert spec.summary in section
    assert f"- {{type: {name}" in section  # its example
    keys = [key for key in spec.model_fields if key != "type"]
    keys += [f"{key}.{sub}" for key in keys for sub in _models_in_fields(spec, key)]
    missing = [key for key in keys if f"| `{key}` |" not in section]
    assert not missing, f"{name}: parameters missing from its section: {missing}"


def _models_in_fields(spec: type[BaseModel], key: str) -> list[str]:
    return [sub for m in _models_in(spec.model_fields[key].annotation) for sub in m.model_fields]


def test_every_exit_code_is_documented(rendered: str) -> None:
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in rendered


@pytest.mark.slow
def test_render_imports_no_tensorflow() -> None:
    script = (
        "import sys; from dltool.reference import render; render(); "
        "loaded = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
