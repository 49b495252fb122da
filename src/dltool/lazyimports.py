"""Importing third-party modules without the parts of them dltool never uses.

Some libraries import, at their top, modules that only a feature dltool leaves off
needs. Two ways to skip that import, each for one ``import`` statement's duration:

- :func:`hidden_from_import`: the module looks not installed (Keras then leaves its
  scikit-learn and matplotlib features off, as where they are missing);
- :func:`import_with_stand_ins`: the module is a stand-in whose named attributes import
  the real one on first use (Typer's help renderer never constructs rich's Markdown
  unless asked for markdown; pydantic never calls ``entry_points`` with its plugins off).

Afterwards every other ``import`` gets the real module, as usual. Only modules not yet
imported are replaced: a program that imported one first keeps it as it is.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def hidden_from_import(names: tuple[str, ...]) -> Iterator[None]:
    """``import name`` raises ImportError for each of ``names`` not yet imported (None in
    sys.modules is Python's "not installed"), until the block ends."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


def import_with_stand_ins(module_name: str, stand_ins: dict[str, str]) -> None:
    """Import ``module_name`` while each module of ``stand_ins`` not yet imported is a
    stand-in holding one attribute (module name -> attribute name), made by :func:`deferred`.

    The stand-in modules are removed from ``sys.modules`` at once, so any other import
    gets the real module. Does nothing if ``module_name`` is imported already. If an import
    meanwhile wants more of a stand-in than its one attribute (another library version),
    ``module_name`` is imported as usual instead.
    """
    if module_name in sys.modules:
        return
    made = {}
    for name, attribute in stand_ins.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name)
        setattr(module, attribute, deferred(name, attribute))
        made[name] = module
    sys.modules.update(made)
    try:
        __import__(module_name)
    except ImportError:  # "cannot import name ... from <stand-in>": imported as usual below
        pass
    finally:
        for name, module in made.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    __import__(module_name)  # nothing to do once the import above succeeded


def deferred(module_name: str, attribute: str) -> type:
    """A stand-in for the class or function ``module_name.attribute``: calling it imports the
    real module and returns what the real one returns (an instance of the real class).

    Its other attributes are not forwarded, and ``isinstance`` against it is False: fit for
    what a library only calls, never inspects.
    """

    def real(cls: type, *args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    return type(attribute, (), {"__new__": real, "__module__": module_name})
