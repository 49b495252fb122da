"""Changing configs without editing them: ``--set key=value`` and ``extends: base.yaml``.

``--set model.layers[0].units=64`` walks dotted keys and list indexes; the value is
read as a YAML scalar (``5`` is a number, ``true`` a boolean, ``[8, 8]`` a list).
``extends`` deep-merges an experiment file over another: mappings merge key by
key, anything else (numbers, lists such as ``model.layers``) is replaced whole.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from dltool.errors import ConfigError
from dltool.files import resolve_path
from dltool.messages import did_you_mean, show
from dltool.yamlio import YamlProblem, parse_yaml, read_yaml_mapping

_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"^{_KEY}(\.{_KEY}|\[\d+\])*$")
DATA_PATH_KEYS = ("path", "test_path", "labels_path")  # relative to the file that names them


def parse_assignment(text: str) -> tuple[str, list[str | int], Any]:
    """``"training.epochs=5"`` -> (``"training.epochs"``, ``["training", "epochs"]``, ``5``).

    Raises:
        ConfigError: not ``KEY=VALUE``, or the value is not valid YAML.
    """
    if not text.isprintable():  # a line break or control character would break the one-line report
        raise ConfigError(
            f"--set {show(text)}: expected KEY=VALUE on one line, without control characters"
        )
    key, sign, value = text.partition("=")
    key = key.strip()
    if not sign or not _PATH.match(key):
        raise ConfigError(
            f"--set {text}: expected KEY=VALUE with KEY like training.epochs or "
            f"model.layers[0].units (received {show(text)})"
        )
    try:
        parsed = parse_yaml(value) if value.strip() else None
    except YamlProblem as problem:
        raise ConfigError(f"--set {text}: the value is not valid YAML ({problem})") from problem
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(rf"{_KEY}|\[\d+\]", key)
    ]
    return key, parts, parsed


def apply_assignment(raw: dict[str, Any], text: str) -> str:
    """Set one ``KEY=VALUE`` in ``raw`` (in place); returns the dotted key.

    Raises:
        ConfigError: the path runs through something that is not a mapping or list,
            or a list index is out of range (with the closest key suggested).
    """
    key, parts, value = parse_assignment(text)
    node: Any = raw
    walked = ""
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ConfigError(
                    f"--set {text}: {walked} is not a list, so [{part}] cannot index it (received {show(node)})"
                )
            if part >= len(node):
                raise ConfigError(
                    f"--set {text}: {walked} has {len(node)} items (expected an index 0..{len(node) - 1})"
                )
            if last:
                node[part] = value
            else:
                node = node[part]
            walked += f"[{part}]"
            continue
        if not isinstance(node, dict):
            raise ConfigError(
                f"--set {text}: {walked} is not a mapping, so it has no key {part!r} (received {show(node)})"
            )
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                if isinstance(parts[position + 1], int):
                    hint = did_you_mean(part, [k for k in node if isinstance(k, str)])
                    raise ConfigError(
                        f"--set {text}: {walked + '.' if walked else ''}{part} is not in the config{hint}"
                    )
                node[part] = {}  # e.g. training.early_stopping.patience: creates the section
            node = node[part]
        walked += f".{part}" if walked else part
    return key


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge recursively, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_experiment(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An experiment file as plain data, with its ``extends`` chain merged in.

    Data paths are made absolute relative to the file that names them, so a base
    file's ``data.path`` keeps pointing at the same file from anywhere.

    Raises:
        ConfigError: unreadable YAML (naming the file), a bad ``extends``, or a cycle.
    """
    try:
        raw = read_yaml_mapping(path)
    except YamlProblem as problem:
        raise ConfigError(f"{path}: {problem}") from problem
    data = raw.get("data")
    if isinstance(data, dict):
        for key in DATA_PATH_KEYS:
            if isinstance(data.get(key), str):
                data[key] = str(resolve_path(data[key], path.parent))
    if "extends" not in raw:
        return raw
    reference = raw.pop("extends")
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(
            f"{path}: extends: expected the path of another experiment file (received {show(reference)})"
        )
    try:
        base_path = resolve_path(reference, path.parent).resolve()
        here = path.resolve()
    except RuntimeError as error:  # Python < 3.13 raises this for a symlink loop
        raise ConfigError(f"{path}: extends: {reference} is a symlink loop") from error
    except OSError as error:  # ELOOP on Python >= 3.13, ENAMETOOLONG, EACCES...
        raise ConfigError(
            f"{path}: extends: {reference} cannot be read ({error.strerror})"
        ) from error
    if base_path in (*chain, here):
        cycle = " -> ".join(p.name for p in (*chain, here, base_path))
        raise ConfigError(
            f"{path}: extends: {reference} leads back to a file already extended ({cycle})"
        )
    if base_path.is_dir():
        raise ConfigError(
            f"{path}: extends: {reference} is a folder (expected the path of another experiment file)"
        )
    if base_path.exists() and not base_path.is_file():  # a FIFO or a device: never opened
        raise ConfigError(f"{path}: extends: {reference} is not a regular file")
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: {reference} not found (looked for {base_path})")
    base = read_experiment(base_path, (*chain, here))
    base.pop("name", None)  # a run is named after the file that was run, not its base
    return deep_merge(base, raw)
