"""dltool.lazyimports: a module imported with stand-ins for parts of what it imports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dltool.lazyimports import deferred, hidden_from_import, import_with_stand_ins


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for made-up modules; whatever they import is forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_the_stand_in_imports_the_real_module_on_first_call(modules: Path) -> None:
    (modules / "heavy_dep.py").write_text("def helper(x):\n    return ('real', x)\n")
    (modules / "light_user.py").write_text("from heavy_dep import helper\n")
    import_with_stand_ins("light_user", {"heavy_dep": "helper"})
    assert "light_user" in sys.modules
    assert "heavy_dep" not in sys.modules  # not imported: the stand-in is gone from sys.modules
    assert sys.modules["light_user"].helper(3) == ("real", 3)
    assert "heavy_dep" in sys.modules  # imported by the call


def test_an_import_wanting_more_than_the_stand_in_gets_the_real_module(modules: Path) -> None:
    """Another version of the library imports a second name: imported as usual instead."""
    (modules / "heavy_dep.py").write_text("def helper():\n    return 1\n\ndef other():\n    return 2\n")  # fmt: skip
    (modules / "light_user.py").write_text("from heavy_dep import helper, other\n")
    import_with_stand_ins("light_user", {"heavy_dep": "helper"})
    user = sys.modules["light_user"]
    assert (user.helper(), user.other()) == (1, 2)
    assert sys.modules["heavy_dep"].helper is user.helper  # the real module, not a stand-in


def test_a_module_imported_already_is_left_as_it_is(modules: Path) -> None:
    (modules / "heavy_dep.py").write_text("def helper():\n    return 1\n")
    (modules / "light_user.py").write_text("from heavy_dep import helper\n")
    import heavy_dep  # type: ignore[import-not-found]

    import_with_stand_ins("light_user", {"heavy_dep": "helper"})
    assert sys.modules["light_user"].helper is heavy_dep.helper


def test_a_deferred_stand_in_gives_the_real_class() -> None:
    from rich.markdown import Markdown

    made = deferred("rich.markdown", "Markdown")("# title")
    assert type(made) is Markdown


def test_hidden_modules_look_not_installed_until_the_block_ends(modules: Path) -> None:
    (modules / "optional_dep.py").write_text("VALUE = 1\n")
    with hidden_from_import(("optional_dep",)), pytest.raises(ImportError):
        import optional_dep  # type: ignore[import-not-found]
    import optional_dep  # type: ignore[import-not-found]

    assert optional_dep.VALUE == 1
