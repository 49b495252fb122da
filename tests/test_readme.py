"""The README's examples are real: its experiment files validate as it says, the `dltool validate`
sessions it shows print exactly what it shows, and every option its command table names exists."""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIGS

README = CONFIGS.parent / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text(encoding="utf-8")) if lang == language]  # fmt: skip


def _named_files() -> dict[str, str]:
    """YAML blocks whose first line is ``# NAME.yaml``: the files the README's sessions use."""
    files = {}
    for body in _blocks("yaml"):
        first = body.splitlines()[0]
        match = re.fullmatch(r"# ([\w.-]+\.yaml)", first)
        if match and "/" not in match.group(1):
            files[match.group(1)] = body
    return files


SESSIONS = [body for body in _blocks("text") if body.startswith("$ dltool validate")]


def test_the_readme_has_validate_sessions_and_their_files() -> None:
    assert len(SESSIONS) >= 3
    assert {"exp.yaml", "broken.yaml"} <= set(_named_files())


@pytest.mark.parametrize("session", SESSIONS, ids=[s.splitlines()[0][2:60] for s in SESSIONS])
def test_validate_sessions_print_what_the_readme_shows(
    session: str,
    run_cli: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, text in _named_files().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "configs").symlink_to(CONFIGS)
    monkeypatch.chdir(tmp_path)
    command, *shown = session.rstrip("\n").splitlines()
    result = run_cli(*shlex.split(command)[2:])
    assert (result.stdout + result.stderr).splitlines() == shown
    assert result.exit_code == (2 if any(line.startswith("error: ") for line in shown) else 0)


def _command_rows() -> list[str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(dltool [^`]*)` \|", table, re.MULTILINE)


@pytest.mark.parametrize("row", _command_rows())
def test_every_option_in_the_command_table_exists(row: str, run_cli: Callable[..., Any]) -> None:
    words = row.split()[1:]
    command = list(itertools.takewhile(lambda word: word.isalpha() and word.islower(), words))
    options = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", row)
    assert options or command, row
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, (row, result.stderr)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.stdout), (row, option)
