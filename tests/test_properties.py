"""Property tests: any experiment file gives exit 0 or one line per problem, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import tiny_config
from dltool.cli import app

RUNNER = CliRunner()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["dense", "relu", "adam", "student", "rule", "1/0", "1e-3"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(config: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(config, dict):
        for key, value in config.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    config = tiny_config()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(config)))
        target = config
        for part in path[:-1]:
            target = target[part]
        if draw(st.booleans()) and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = draw(values)
    return config


def _check(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    result = RUNNER.invoke(app, ["validate", "--quiet", str(path)])
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, text)
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert lines
        assert all(line.startswith(f"error: {path}: ") for line in lines), result.stderr


@settings(
    max_examples=int(os.environ.get("DLTOOL_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(config=mutated_configs())
def test_mutated_configs(tmp_path: Path, config: Any) -> None:
    _check(tmp_path, yaml.safe_dump(config))


@settings(
    max_examples=int(os.environ.get("DLTOOL_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    _check(tmp_path, text)


@settings(
    max_examples=int(os.environ.get("DLTOOL_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=values)
def test_arbitrary_yaml_values(tmp_path: Path, data: Any) -> None:
    _check(tmp_path, yaml.safe_dump(data))
