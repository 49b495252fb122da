"""The JSON Schema of the experiment and sweep files, for editors: ``dltool schema``.

Made from the pydantic models, so it never drifts from what ``dltool validate`` accepts.
VS Code's YAML extension (yaml-language-server) completes and checks keys in a file
whose first line is ``# yaml-language-server: $schema=PATH``; the shipped configs point
at the copies in ``docs/`` (``tests/test_editor_schema.py`` keeps those current).

Two things a file may do that the models alone do not say: leave out ``name`` (the
file's name is used) and ``extends`` another file, which then may leave out anything
that file gives (so a file with ``extends`` is checked against the same schema with
no key required).
"""

from __future__ import annotations

import copy
import json
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("experiment", "sweep")
SHIPPED = {"experiment": "docs/experiment.schema.json", "sweep": "docs/sweep.schema.json"}


def json_schema(kind: str = "experiment") -> dict[str, Any]:
    """The JSON Schema of an experiment file (``kind="experiment"``) or a sweep file."""
    if kind == "sweep":
        from dltool.sweep.spec import SweepConfig

        schema = SweepConfig.model_json_schema()
        return {**schema, "$schema": DRAFT, "title": "dltool sweep file"}
    from dltool.config import ExperimentConfig

    full = ExperimentConfig.model_json_schema()
    defs = full.pop("$defs", {})
    full["required"] = [k for k in full.get("required", []) if k != "name"]  # default: file name
    full["properties"]["name"]["description"] = "run folder prefix; default: the file's name"
    extends = {"type": "string", "description": "another experiment file this one changes (a path relative to this file)"}  # fmt: skip
    partial = _nothing_required({"$defs": defs, **copy.deepcopy(full)}, "Partial")
    partial["properties"]["extends"] = extends
    return {
        "$schema": DRAFT,
        "title": "dltool experiment file",
        "description": "An experiment: data, model, training (see docs/reference.md).",
        "type": "object",
        "if": {"required": ["extends"]},
        "then": {"$ref": "#/$defs/PartialExperiment"},
        "else": {"$ref": "#/$defs/Experiment"},
        "$defs": {
            **defs,
            **partial.pop("$defs"),
            "Experiment": full,
            "PartialExperiment": partial,
        },
    }


def _nothing_required(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of ``schema`` and its ``$defs`` (renamed ``prefix`` + name) with no key required."""

    def relax(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: relax(v) for k, v in node.items() if k != "required"}
            if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/$defs/"):
                out["$ref"] = "#/$defs/" + prefix + out["$ref"].removeprefix("#/$defs/")
            return out
        if isinstance(node, list):
            return [relax(v) for v in node]
        return node

    defs = schema.get("$defs", {})
    body = relax({k: v for k, v in schema.items() if k != "$defs"})
    body["$defs"] = {prefix + name: relax(value) for name, value in defs.items()}
    # A discriminated union still needs its tag (type, source, name) to pick a member.
    for name, value in defs.items():
        tags = [k for k in value.get("required", []) if k in ("type", "source", "name")]
        if tags and "discriminator" not in name:
            body["$defs"][prefix + name]["required"] = tags
    return body


def schema_text(kind: str = "experiment") -> str:
    """:func:`json_schema` as the text ``dltool schema`` prints and docs/ keeps."""
    return json.dumps(json_schema(kind), indent=2) + "\n"
