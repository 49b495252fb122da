"""The experiment-file reference (``docs/reference.md``), rendered from the code itself.

Keys, types, defaults, constraints and descriptions come from the pydantic models
in :mod:`dltool.config` and :mod:`dltool.layers`; the layer list from
:data:`dltool.layers.LAYERS`; the exit codes from :class:`dltool.errors.ExitCode`.
Nothing here repeats a key name, so the reference cannot drift from what
``dltool validate`` accepts. Imports neither Keras nor TensorFlow.

Regenerate with ``python -m dltool.reference > docs/reference.md``.

Longer than 400 lines because it is one job with many cases: every kind of annotation,
union, default and validator note pydantic carries, rendered as Markdown.
"""

from __future__ import annotations

import inspect
import re
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dltool import config, errors, overrides
from dltool.config import ExperimentConfig
from dltool.layers import LAYERS, LayerSpec

REGENERATE = "python -m dltool.reference > docs/reference.md"
# Keys that load_config fills in when a file leaves them out -> the function that does it.
LOADER_DEFAULTS = {"name": config._default_name}

_BASIC = {int: "integer", float: "number", bool: "boolean", str: "string"}
_PLURAL = {"integer": "integers", "number": "numbers", "string": "strings", "mapping": "mappings"}
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass
class _Type:
    """What one annotation allows, in words."""

    text: str
    constraints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # docstrings of Before/After validators
    models: list[type[BaseModel]] = field(default_factory=list)  # nested mappings
    discriminator: str | None = None
    nullable: bool = False


def _doc_line(text: str | None) -> str:
    """The first paragraph of a docstring, on one line, with RST ``code`` as Markdown."""
    paragraph = inspect.cleandoc(text or "").split("\n\n")[0]
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(paragraph.split()))


def _own_doc(cls: type) -> str:
    return _doc_line(cls.__dict__.get("__doc__"))


def _value(value: Any) -> str:
    """A default or example value as it would be written in YAML (flow style)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, float) else str(value)


def _length(minimum: int | None, maximum: int | None) -> str | None:
    if minimum is not None and minimum == maximum:
        return f"length {minimum}"
    if minimum is not None and maximum is not None:
        return f"length {minimum} to {maximum}"
    if minimum is not None:
        return f"length >= {minimum}"
    return f"length <= {maximum}" if maximum is not None else None


def _apply_metadata(described: _Type, metadata: list[Any]) -> _Type:
    """Add the constraints and validator notes of ``metadata`` (Field(...) and friends)."""
    lengths: dict[str, int | None] = {"min": None, "max": None}
    for item in metadata:
        if isinstance(item, FieldInfo):
            described.discriminator = _discriminator(item) or described.discriminator
            _apply_metadata(described, list(item.metadata))
        elif getattr(item, "pattern", None) is not None:
            described.constraints.append(f"matches `{item.pattern}`")
        elif isinstance(item, annotated_types.MinLen):
            lengths["min"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            lengths["max"] = item.max_length
        elif isinstance(item, annotated_types.BaseMetadata):
            described.constraints += [
                f"{sign} {_value(getattr(item, name))}"
                for name, sign in _BOUNDS.items()
                if getattr(item, name, None) is not None
            ]
        elif callable(getattr(item, "func", None)) and _doc_line(item.func.__doc__):
            described.notes.append(_doc_line(item.func.__doc__))
    length = _length(lengths["min"], lengths["max"])
    if length:
        described.constraints.append(length)
    return described


def _discriminator(info: FieldInfo) -> str | None:
    tag = info.discriminator
    return tag if isinstance(tag, str) else None


def _describe(annotation: Any, metadata: list[Any] | None = None) -> _Type:
    """Describe a type annotation (with its Field metadata) in words."""
    metadata = list(metadata or [])
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata += extra
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            described = _describe(members[0])
        elif all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            described = _Type("mapping", models=members)
        else:
            described = _Type(" or ".join(_describe(m).text for m in members))
        described.nullable = described.nullable or len(members) < len(args)
    elif origin is Literal:
        kind = "string" if all(isinstance(a, str) for a in args) else "value"
        choices = ", ".join(f"`{_value(a)}`" for a in args)
        described = _Type(kind, [f"one of {choices}" if len(args) > 1 else f"exactly {choices}"])
    elif origin in (list, tuple):
        described = _sequence(args)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        described = _Type("mapping", models=[annotation])
    else:
        described = _Type(_BASIC.get(annotation, getattr(annotation, "__name__", str(annotation))))
    return _apply_metadata(described, metadata)


def _sequence(args: tuple[Any, ...]) -> _Type:
    """``list[X]``, ``tuple[X, ...]`` or a fixed ``tuple[X, Y]``, written as a YAML list."""
    fixed = len(args) > 1 and args[-1] is not Ellipsis
    inner = _describe(args[0])
    count = f"{len(args)} " if fixed else ""
    text = f"list of {count}{_PLURAL.get(inner.text, inner.text)}"
    constraints = [f"each item {c}" for c in inner.constraints]
    return _Type(text, constraints, inner.notes, inner.models, inner.discriminator)


# ------------------------------------------------------------------------- tables


@dataclass
class _Union:
    """A discriminated union of mappings, rendered as its own section."""

    path: str
    members: list[type[BaseModel]]
    discriminator: str
    description: str


def _anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _tags(model: type[BaseModel], discriminator: str) -> list[str]:
    return [str(a) for a in get_args(model.model_fields[discriminator].annotation)]


def _validator_notes(model: type[BaseModel]) -> tuple[dict[str, list[str]], list[str]]:
    """Docstrings of a model's field validators (by field) and model validators."""
    decorators = model.__pydantic_decorators__
    by_field: dict[str, list[str]] = {}
    for decorator in decorators.field_validators.values():
        note = _doc_line(decorator.func.__doc__)
        for name in decorator.info.fields if note else ():
            by_field.setdefault(name, []).append(note)
    checks = [_doc_line(d.func.__doc__) for d in decorators.model_validators.values()]
    return by_field, [c for c in checks if c]


def _rows(
    model: type[BaseModel],
    prefix: str,
    unions: list[_Union],
    inline: bool = True,
    skip: str | None = None,
) -> list[list[str]]:
    """One table row per key of ``model`` (and of mappings nested in it, when ``inline``).

    Unions of mappings are queued on ``unions`` and linked; the layer union links to
    the layer section.
    """
    rows: list[list[str]] = []
    field_notes, _ = _validator_notes(model)
    for name, info in model.model_fields.items():
        if name == skip:
            continue
        path = f"{prefix}.{name}" if prefix else name
        described = _describe(info.annotation, list(info.metadata))
        tag = _discriminator(info) or described.discriminator
        text = described.text + (" or null" if described.nullable else "")
        notes = [info.description or "", *field_notes.get(name, []), *described.notes]
        nested: list[list[str]] = []
        item_path = f"{path}[]" if text.startswith("list of") else path
        if len(described.models) > 1 and all(issubclass(m, LayerSpec) for m in described.models):
            text += ": see [Layers](#layers)"
        elif len(described.models) > 1 and tag:
            unions.append(_Union(item_path, described.models, tag, info.description or ""))
            text += f": see [`{item_path}`](#{_anchor(item_path)})"
        elif described.models and inline:
            nested = _rows(described.models[0], item_path, unions)
        elif described.models:
            text += f": see [`{item_path}`](#{_anchor(item_path)})"
        rows.append(
            [
                f"`{path}`",
                text,
                _default(info, path),
                "; ".join(described.constraints),
                " ".join(_sentence(n) for n in notes if n),
            ]
        )
        rows += nested
    return rows


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _default(info: FieldInfo, path: str) -> str:
    if path in LOADER_DEFAULTS:
        text = _doc_line(LOADER_DEFAULTS[path].__doc__).rstrip(".")
        return f"when left out: {text[:1].lower()}{text[1:]}"
    if info.default_factory is not None:
        return f"`{_value(info.default_factory())}`"  # type: ignore[call-arg]
    return "required" if info.is_required() else f"`{_value(info.default)}`"


def _table(rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    lines = ["| Key | Type | Default | Constraints | Description |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _checks(model: type[BaseModel]) -> list[str]:
    _, checks = _validator_notes(model)
    return [*(f"- Checked: {c}" for c in checks), ""] if checks else []


# ----------------------------------------------------------------------- sections


def _union_section(union: _Union, unions: list[_Union]) -> list[str]:
    tags = [tag for member in union.members for tag in _tags(member, union.discriminator)]
    lines = [
        f'<a id="{_anchor(union.path)}"></a>',
        f"## `{union.path}`",
        "",
        f"One mapping of {len(union.members)} kinds, chosen by `{union.path}.{union.discriminator}`: "
        + ", ".join(f"`{t}`" for t in tags)
        + ".",
        "",
    ]
    if union.description:
        lines += [_sentence(union.description), ""]
    for member in union.members:
        tag = ", ".join(_tags(member, union.discriminator))
        lines += [f"### `{union.path}` with `{union.discriminator}: {tag}`", ""]
        if _own_doc(member):
            lines += [_own_doc(member), ""]
        rows = _rows(member, union.path, unions, skip=union.discriminator)
        lines += _table(rows) or [f"No keys besides `{union.discriminator}`.", ""]
        lines += _checks(member)
    return lines


def _model_section(path: str, model: type[BaseModel], unions: list[_Union]) -> list[str]:
    lines = [f'<a id="{_anchor(path)}"></a>', f"## `{path}`", ""]
    if _own_doc(model):
        lines += [_own_doc(model), ""]
    return lines + _table(_rows(model, path, unions)) + _checks(model)


def _layer_section() -> list[str]:
    lines = [
        '<a id="layers"></a>',
        "## Layers",
        "",
        f"Each entry of `model.layers` is one mapping of {len(LAYERS)} kinds, chosen by `type`. "
        "Keys below are relative to the entry, e.g. `model.layers[0].units`. "
        "`dltool layers` prints the same list.",
        "",
        " ".join(f"[`{name}`](#layer-{_anchor(name)})" for name in LAYERS),
        "",
    ]
    for name, spec in LAYERS.items():
        lines += [
            f'<a id="layer-{_anchor(name)}"></a>',
            f"### `{name}`",
            "",
            f"{spec.summary}.",
            "",
        ]
        lines += _table(_rows(spec, "", [], skip="type")) or ["No keys besides `type`.", ""]
        lines += _checks(spec)
        example = yaml.safe_dump(spec.example, default_flow_style=True, sort_keys=False, width=200)
        lines += ["```yaml", "model:", "  layers:", f"    - {example.strip()}"]
        lines += ["```", ""]
    return lines


def _exit_code_meanings() -> dict[str, str]:
    """The comment beside each ``ExitCode`` member in errors.py."""
    try:
        source = inspect.getsource(errors.ExitCode)
    except (OSError, TypeError):  # no source file (e.g. a zipped install)
        return {}
    found = re.findall(r"^\s+(\w+)\s*=\s*\d+\s*#\s*(.+)$", source, flags=re.MULTILINE)
    return {name: _doc_line(text) for name, text in found}


def _exit_code_section() -> list[str]:
    meanings = _exit_code_meanings()
    raised: dict[int, list[str]] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, BaseException):
            code = getattr(value, "exit_code", None)
            if value.__module__ == errors.__name__ and code is not None:
                raised.setdefault(int(code), []).append(f"`{value.__name__}`")
    lines = [
        '<a id="exit-codes"></a>',
        "## Exit codes",
        "",
        "| Code | Name | Meaning | Errors (`dltool.errors`) |",
        "|---|---|---|---|",
    ]
    for member in errors.ExitCode:
        lines.append(
            f"| {int(member)} | `{member.name}` | {_cell(meanings.get(member.name, ''))} "
            f"| {', '.join(raised.get(int(member), []))} |"
        )
    return [*lines, ""]


def _all_models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from ``root``, each once."""
    seen: list[type[BaseModel]] = []
    queue = [root]
    while queue:
        model = queue.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            queue += _describe(info.annotation, list(info.metadata)).models
    return seen


def render() -> str:
    """The whole reference, as Markdown."""
    unions: list[_Union] = []
    top = _rows(ExperimentConfig, "", unions, inline=False)  # queues the top-level unions
    body: list[str] = []
    shown: set[str] = set()
    for name, info in ExperimentConfig.model_fields.items():  # sections in file order
        models = _describe(info.annotation, list(info.metadata)).models
        if len(models) == 1:
            body += _model_section(name, models[0], unions)
        for union in [u for u in unions if u.path == name]:
            body += _union_section(union, unions)
            shown.add(union.path)
    index = 0
    while index < len(unions):  # nested unions; their sections may queue more
        if unions[index].path not in shown:
            body += _union_section(unions[index], unions)
            shown.add(unions[index].path)
        index += 1
    strict = all(m.model_config.get("extra") == "forbid" for m in _all_models(ExperimentConfig))
    contents = ["[Top level](#top-level)"]
    contents += [f"[`{h}`](#{_anchor(h)})" for h in re.findall(r"^## `([^`]+)`$", "\n".join(body), re.M)]  # fmt: skip
    contents += ["[Layers](#layers)", "[Changing configs](#changing-configs)", "[Exit codes](#exit-codes)"]  # fmt: skip
    lines = [
        "# Experiment file reference",
        "",
        f"<!-- Generated from the code by `{REGENERATE}`. Do not edit by hand. -->",
        "",
        "Every key of a dltool experiment file (YAML). Keys are written as dotted paths; "
        "`[]` stands for any item of a list (`model.layers[]` is every layer). "
        + ("Unknown keys are errors, at every level. " if strict else "")
        + "Check a file with `dltool validate FILE`.",
        "",
        "Contents: " + " · ".join(contents),
        "",
        '<a id="top-level"></a>',
        "## Top level",
        "",
        *_table(top),
        *_checks(ExperimentConfig),
        *body,
        *_layer_section(),
        '<a id="changing-configs"></a>',
        "## Changing configs",
        "",
        inspect.cleandoc(overrides.__doc__ or "").replace("``", "`"),
        "",
        *_exit_code_section(),
    ]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
