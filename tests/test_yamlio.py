"""The YAML reader refuses what safe_load lets through: one clear line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltool.yamlio import MAX_FILE_BYTES, YamlProblem, parse_yaml, read_yaml_mapping

BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "a: 1\nb: 2\na: 3\n",
            r"line 3: duplicate key 'a' \(first defined on line 1\)",
            id="duplicate-key",
        ),
        pytest.param(
            "m:\n  x: 1\n  x: 2\n", r"line 3: duplicate key 'x'", id="duplicate-nested-key"
        ),
        pytest.param(
            BILLION_LAUGHS,
            r"more than 100,000 values once aliases are expanded",
            id="billion-laughs",
        ),
        pytest.param("a: &x [*x]\n", r"an alias refers to itself", id="self-alias"),
        pytest.param(
            "a: " + "[" * 60 + "]" * 60 + "\n",
            r"nested more than 50 levels deep",
            id="deep-nesting",
        ),
        pytest.param(
            "a: " + "[" * 2000 + "]" * 2000 + "\n",
            r"nested more than 50 levels deep",
            id="recursion-limit",
        ),
        pytest.param(
            "a: !!python/object/apply:os.system ['true']\n",
            r"YAML syntax error: could not determine a constructor",
            id="python-tag",
        ),
        pytest.param("a: [1, 2\n", r"line \d+, column \d+: YAML syntax error", id="syntax"),
        pytest.param("? [1, 2]\n: x\n", r"a mapping key must be a plain value", id="list-key"),
        pytest.param(
            "a: \x1f\n",
            r"character U\+001F at offset 3 is not allowed in YAML",
            id="control-character",
        ),
        pytest.param(
            "a: 1\n---\nb: 2\n",
            r"YAML syntax error: but found another document",
            id="two-documents",
        ),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(YamlProblem, match=message):
        parse_yaml(text)


def test_aliases_within_limits_still_work() -> None:
    assert parse_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_merge_keys_are_supported() -> None:
    text = "base: &b {epochs: 3, batch_size: 8}\ntraining:\n  <<: *b\n  epochs: 4\n"
    assert parse_yaml(text)["training"] == {"epochs": 4, "batch_size": 8}
    both = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n"
    assert parse_yaml(both)["c"] == {"x": 1, "y": 2}
    with pytest.raises(
        YamlProblem, match=r"line 5: duplicate key 'epochs' \(first defined on line 4\)"
    ):
        parse_yaml("base: &b {epochs: 3}\ntraining:\n  <<: *b\n  epochs: 4\n  epochs: 5\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "file is empty", id="empty"),
        pytest.param(b"# only a comment\n", "file is empty", id="comment-only"),
        pytest.param(b"- a\n- b\n", "top level is a list, expected a mapping", id="list-top"),
        pytest.param(b"just text\n", "top level is a str, expected a mapping", id="scalar-top"),
        pytest.param(b"name: caf\xe9\n", r"not UTF-8 text \(bad byte at offset 9\)", id="latin-1"),
        pytest.param(b"a: " + b"x" * MAX_FILE_BYTES, "the limit is 1,000,000", id="too-large"),
    ],
)
def test_read_refuses_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    with pytest.raises(YamlProblem, match=message):
        read_yaml_mapping(path)


def test_read_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(YamlProblem, match="file not found"):
        read_yaml_mapping(tmp_path / "nope.yaml")
    with pytest.raises(YamlProblem, match="is a folder"):
        read_yaml_mapping(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "a: !!python/object/apply:os.system ['touch pwned']\n",
            "could not determine a constructor",
            id="python-tag",
        ),
        pytest.param(BILLION_LAUGHS, "alias bomb", id="billion-laughs"),
        pytest.param("a: &x [*x]\n", "an alias refers to itself", id="self-alias"),
        pytest.param(
            "a: " + "[" * 80 + "]" * 80 + "\n", "nested more than 50 levels deep", id="deep"
        ),
        pytest.param("name: a\nname: b\n", "duplicate key 'name'", id="duplicate-key"),
        pytest.param("- 1\n", "top level is a list", id="not-a-mapping"),
        pytest.param("", "file is empty", id="empty"),
    ],
)
def test_hostile_files_refused_by_train(tmp_path: Path, text: str, message: str) -> None:
    """Through the real command: exit 2, one line, nothing created."""
    from typer.testing import CliRunner

    from dltool.cli import app

    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "pwned").exists()


def test_non_utf8_and_oversized_refused_by_train(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dltool.cli import app

    for content, message in (
        (b"name: caf\xe9\n", "not UTF-8"),
        (b"a: " + b"x" * MAX_FILE_BYTES, "the limit is"),
    ):
        path = tmp_path / "f.yaml"
        path.write_bytes(content)
        result = CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs")])
        assert (result.exit_code, len(result.stderr.splitlines())) == (2, 1)
        assert message in result.stderr
    assert not (tmp_path / "runs").exists()


def test_libyaml_parses_what_pyyaml_parses() -> None:
    """The C parser (when PyYAML has it, as its wheels do) gives the same data as PyYAML's
    own for every shipped config, and its refusals keep PyYAML's messages."""
    from dltool import yamlio

    assert yamlio._FastLoader is not None
    shipped = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))
    assert len(shipped) > 5
    for path in shipped:
        text = path.read_text()
        assert yamlio.parse_yaml(text) == yamlio._parse_with_messages(text), path
    with pytest.raises(YamlProblem, match=r"^line 2, column 4: YAML syntax error: mapping values are not allowed here$"):  # fmt: skip
        yamlio.parse_yaml("a: 1\n  b: 2\n")
    with pytest.raises(YamlProblem, match=r"^line 2: duplicate key 'a' \(first defined on line 1\)$"):  # fmt: skip
        yamlio.parse_yaml("a: 1\na: 2\n")
