"""The module graph: no import circle, and using a run never loads the training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dltool"


def _module_name(path: Path) -> str:
    return ".".join(["dltool", *path.relative_to(SRC).with_suffix("").parts]).removesuffix(
        ".__init__"
    )


MODULES = {_module_name(path): path for path in SRC.rglob("*.py")}


def _imports_at_module_level(name: str) -> set[str]:
    """dltool modules that ``name`` imports when it is imported (TYPE_CHECKING blocks aside)."""
    found: set[str] = set()
    for node in ast.parse(MODULES[name].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    # A package's own __init__ runs first anyway: an edge to it is not a circle.
    return {m for m in found & MODULES.keys() if m != name and not name.startswith(f"{m}.")}


GRAPH = {name: _imports_at_module_level(name) for name in MODULES}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for module in GRAPH[todo.pop()] - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_the_graph_is_read() -> None:
    assert "dltool.pipelines" in GRAPH["dltool.training"]
    assert "dltool.rundir" in _reachable("dltool.predict")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_circle(module: str) -> None:
    assert module not in _reachable(module)


@pytest.mark.parametrize(
    "user", ["dltool.predict", "dltool.runs", "dltool.sweep", "dltool.cli", "dltool.report"]
)
def test_using_runs_does_not_import_training(user: str) -> None:
    assert not {"dltool.training", "dltool.prepare", "dltool.callbacks"} & _reachable(user)


@pytest.mark.slow
def test_the_experiment_schema_imports_no_numpy() -> None:
    """Each data source's schema sits beside its loader; the loaders import NumPy, pandas and
    Pillow inside their functions, so `dltool validate` still starts without them."""
    import subprocess
    import sys

    probe = (
        "import sys, dltool.config; print(sorted({'numpy', 'pandas', 'PIL'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
