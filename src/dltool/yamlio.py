"""Read YAML files safely.

``yaml.safe_load`` refuses ``!!python/...`` tags but happily accepts duplicate
keys (the last one silently wins), alias bombs ("billion laughs"), cyclic
aliases and absurd nesting. :func:`read_yaml_mapping` refuses all of those with
one clear line each, before anything walks the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dltool.files import FileRefused, read_limited

MAX_FILE_BYTES = 1_000_000  # an experiment file is a few KB; 1 MB is generous
MAX_NODES = 100_000  # YAML nodes after expanding every alias
MAX_DEPTH = 50  # nesting levels; real configs use fewer than 10


class YamlProblem(Exception):
    """A YAML document that cannot be read. The message is one line, no file name."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Strict:
    """A safe loader that refuses duplicate keys instead of keeping the last one.

    Merge keys (``<<: *base``) are safe and supported: a key written in the mapping
    itself overrides one merged from ``<<``; only a key written twice is refused.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # flatten_mapping (in super) merges these in before the mapping's own keys
            key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError as error:  # an unhashable key such as a list
                raise YamlProblem(f"line {line}: a mapping key must be a plain value") from error
            if first is not None:
                raise YamlProblem(
                    f"line {line}: duplicate key {key!r} (first defined on line {first})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _StrictLoader(_Strict, yaml.SafeLoader):
    """PyYAML's own parser, in Python: its error messages are the ones dltool shows."""


# libyaml's parser, in C, when PyYAML was built with it: about 10x faster (`dltool runs`
# parses every run's config.yaml). The same safe constructor and checks run on its nodes;
# a document it does not accept is parsed again by _StrictLoader, for the message.
_FastLoader: Any = type("_FastLoader", (_Strict, yaml.CSafeLoader), {}) if yaml.__with_libyaml__ else None  # fmt: skip


def _limits_nesting(loader: Any) -> bool:
    """Whether this libyaml refuses absurd nesting itself (0.2.5 and later: 1,000 levels):
    its composer recurses in C, so an older one could overflow the stack on ``[[[[...``
    before :func:`_check_graph` sees the nodes. Checked once, in microseconds."""
    try:
        loader("[" * 1_100 + "]" * 1_100).get_single_node()  # valid, only too deep
    except yaml.YAMLError:
        return True
    return False


if _FastLoader is not None and not _limits_nesting(_FastLoader):
    _FastLoader = None


def _check_graph(root: yaml.Node) -> None:
    """Refuse cyclic aliases, alias bombs and deep nesting, before anything walks the data."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise YamlProblem(
                f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
            )
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise YamlProblem(f"line {node.start_mark.line + 1}: an alias refers to itself")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        in_progress.discard(key)
        if total > MAX_NODES:
            raise YamlProblem(
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)"
            )
        sizes[key] = total
        return total

    size(root, 0)


def parse_yaml(text: str) -> Any:
    """Parse one YAML document with the checks above. Raises :class:`YamlProblem`."""
    if _FastLoader is not None:
        try:
            return _parse(_FastLoader(text))
        except YamlProblem:
            raise  # a duplicate key, an alias bomb, deep nesting: found by our own checks
        except Exception:  # noqa: S110 - refused by libyaml: PyYAML says why, in its words
            pass
    return _parse_with_messages(text)


def _parse(loader: Any) -> Any:
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    except RecursionError as error:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep") from error
    finally:
        loader.dispose()


def _parse_with_messages(text: str) -> Any:
    try:
        loader = _StrictLoader(text)  # the reader checks for forbidden characters here
    except yaml.reader.ReaderError as error:
        raise YamlProblem(
            f"character U+{error.character:04X} at offset {error.position} is not allowed in YAML"
        ) from error
    try:
        return _parse(loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = error.problem or error.context or "invalid YAML"
        raise YamlProblem(f"{where}YAML syntax error: {problem}") from error
    except yaml.YAMLError as error:
        raise YamlProblem(f"YAML error: {' '.join(str(error).split())}") from error


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping. Raises :class:`YamlProblem`.

    Only a regular file of at most MAX_FILE_BYTES is read (a FIFO or a device is refused).
    """
    try:
        raw = read_limited(path, MAX_FILE_BYTES, "a YAML file")
    except FileRefused as refused:
        raise YamlProblem(str(refused)) from refused
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlProblem(f"not UTF-8 text (bad byte at offset {error.start})") from error
    data = parse_yaml(text)
    if data is None:
        raise YamlProblem("file is empty (expected a mapping such as 'name: ...')")
    if not isinstance(data, dict):
        raise YamlProblem(
            f"top level is a {type(data).__name__}, expected a mapping of keys such as 'model:'"
        )
    return data
