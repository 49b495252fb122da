"""Turn pydantic validation errors into dltool's one-line problem reports.

Each line reads ``SOURCE: dotted.key: problem (received X; expected Y)``, with a
"did you mean" for near-misses. Union tags that pydantic puts in error locations
(``model.layers.1.dense.units``) are removed, so the key is the one in the file.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from dltool.schema import PATTERN_RULES

DISCRIMINATORS = ("type", "name", "source")  # the tag field of each union in the schema


class CrossFieldError(ValueError):
    """Several problems found by a model validator, each with its own dotted key."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {text}" for key, text in problems))
        self.problems = problems


def did_you_mean(received: object, choices: list[str] | tuple[str, ...]) -> str:
    """``", did you mean 'dense'?"`` for a close match, else ``""``."""
    if not isinstance(received, str):
        return ""
    close = difflib.get_close_matches(received, list(choices), n=1, cutoff=0.6)
    return f", did you mean {close[0]!r}?" if close else ""


def show(value: Any) -> str:
    """A short, readable, single-line rendering of a received value."""
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    text = repr(value) if isinstance(value, str) else " ".join(str(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def size_in_bytes(count: float) -> str:
    """``4004`` -> ``'4,004 bytes'``, ``3.73e7`` -> ``'37.3 MB'``, ``1.6e9`` -> ``'1.6 GB'``.

    Decimal units, as disks and ``ls -h --si`` count; under a megabyte the exact count.
    """
    if count < 1e6:
        return f"{count:,.0f} bytes"
    for unit, scale in (("MB", 1e6), ("GB", 1e9)):
        if count < scale * 1000:
            return f"{count / scale:,.1f} {unit}"
    return f"{count / 1e12:,.1f} TB"


_TYPE_NOUNS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a text value",
    "list": "a list",
    "tuple": "a list",
    "dict": "a mapping",
    "model": "a mapping",
}
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (one for a model, several for a union)."""
    if getattr(annotation, "__metadata__", None) is not None:
        annotation = annotation.__origin__  # Annotated[X, ...] -> X
    if getattr(annotation, "__origin__", None) in (list, tuple, dict):
        return []
    if isinstance(annotation, type):  # a one-member union collapses to its member
        return [annotation] if issubclass(annotation, BaseModel) else []
    # Unions, including Optional[Annotated[Union[...], ...]]: flatten every member.
    return [m for arg in getattr(annotation, "__args__", ()) for m in _members(arg)]


def _tags(member: type[BaseModel], key: str | None = None) -> list[str]:
    """The tag values that select ``member`` in a union (by ``key``, or by any discriminator)."""
    tags: list[str] = []
    for field in (key,) if key else DISCRIMINATORS:
        info = member.model_fields.get(field)
        args = getattr(info.annotation, "__args__", ()) if info else ()
        tags += [a for a in args if isinstance(a, str)]
    return tags


def _walk(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[Any, str]:
    """The annotation found at ``loc`` and the dotted path, with union tags removed."""
    current: Any = root
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            args = getattr(current, "__args__", ())
            current = args[0] if args else None
            continue
        members = _members(current)
        tagged = [m for m in members if part in _tags(m) and part not in m.model_fields]
        if tagged:
            current = tagged[0]  # ``part`` was a union tag such as 'dense': not a key
            continue
        path += _key_text(part, first=not path)
        model = members[0] if len(members) == 1 else None
        if model is None or part not in model.model_fields:
            return None, path
        current = model.model_fields[part].annotation
    return current, path


def annotation_at(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[Any, str]:
    """The type annotation at a pydantic error location, and the dotted key it names."""
    return _walk(loc, root)


def _expected_value(loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    """What a missing key should hold: its type, and its description where it has one."""
    parent, _ = _walk(loc[:-1], root)
    members = [m for m in _members(parent) if loc[-1] in m.model_fields]
    if not members:
        return "a value"
    field = members[0].model_fields[loc[-1]]
    annotation = field.annotation
    origin = typing.get_origin(annotation) or annotation
    if origin is typing.Literal:
        noun = "one of " + ", ".join(str(choice) for choice in typing.get_args(annotation))
    else:
        nouns = {int: "an integer", float: "a number", str: "a text value", list: "a list"}
        noun = "a mapping" if _members(annotation) else nouns.get(origin, "a value")  # type: ignore[arg-type]
    return f"{noun}: {field.description}" if field.description else noun


def _key_text(key: Any, first: bool) -> str:
    """``.epochs`` for a plain key; ``['odd key']`` for one that would break the line."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return key if first else f".{key}"
    return f"[{key!r}]"


def _keys_at(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    annotation, _ = _walk(loc, root)
    members = _members(annotation)
    if len(members) != 1:
        return []
    keys = list(members[0].model_fields)
    return sorted(keys, key=lambda k: k not in DISCRIMINATORS)  # the tag first, as people write it


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def _keys_of(value: Any) -> str:
    """``{'a': 1, 'b': 2}`` -> ``'a mapping of a, b'``; anything else as :func:`show` does."""
    if isinstance(value, dict) and value:
        return show(f"a mapping of {', '.join(map(str, value))}").strip("'")
    return show(value)


def _describe(error: Any, root: type[BaseModel]) -> tuple[str, str]:
    """(dotted key, problem text) for one pydantic error."""
    kind, ctx, received = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    annotation, path = _walk(loc, root)
    path = path or "(top level)"
    if kind == "extra_forbidden":
        allowed = _keys_at(loc[:-1], root)
        hint = did_you_mean(loc[-1], allowed)
        return (
            path,
            f"unknown key{hint} (received {loc[-1]!r}; expected one of {', '.join(allowed)})",
        )
    if kind == "missing":
        return path, f"missing required key (expected {_expected_value(loc, root)})"
    if kind == "literal_error":
        choices = _quoted(ctx.get("expected", ""))
        return (
            path,
            f"unknown value{did_you_mean(received, choices)} (received {show(received)}; expected one of {', '.join(choices)})",
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = ctx.get("discriminator", "").strip("'")
        choices = [tag for member in _members(annotation) for tag in _tags(member, key)]
        if kind == "union_tag_not_found":
            return f"{path}.{key}", f"missing required key (expected one of {', '.join(choices)})"
        tag = ctx.get("tag")
        return (
            f"{path}.{key}",
            f"unknown {key}{did_you_mean(tag, choices)} (received {show(tag)}; expected one of {', '.join(choices)})",
        )
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(f"{_BOUNDS[k]} {v}" for k, v in ctx.items() if k in _BOUNDS)
        return path, f"out of range (received {show(received)}; expected a number {bound})"
    if kind in ("too_short", "too_long"):
        count = len(received) if hasattr(received, "__len__") else "?"
        limit = (
            f"at least {ctx.get('min_length')}"
            if kind == "too_short"
            else f"at most {ctx.get('max_length')}"
        )
        return path, f"wrong number of items (received {count}; expected {limit})"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        rule = PATTERN_RULES.get(pattern, f"text matching {pattern}")
        return path, f"not allowed (received {show(received)}; expected {rule})"
    if kind == "value_error":
        return path, str(ctx.get("error", error["msg"]))
    if kind == "distribution":  # a sweep's random.params value
        return path, (
            f"not a distribution (received {_keys_of(received)}; expected a mapping with one key of "
            f"choice, uniform, log_uniform or int_uniform, e.g. {{log_uniform: [1.0e-4, 1.0e-1]}})"
        )
    noun = next((n for prefix, n in _TYPE_NOUNS.items() if kind.startswith(prefix)), None)
    if noun:
        return path, f"wrong type (received {show(received)}; expected {noun})"
    return path, f"{error['msg']} (received {show(received)})"


def describe_validation_error(
    error: ValidationError, root: type[BaseModel]
) -> list[tuple[str, str]]:
    """(dotted key, ``problem (received X; expected Y)``) for every problem, in order."""
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, CrossFieldError):
            problems += cause.problems
        else:
            problems.append(_describe(item, root))
    return problems
