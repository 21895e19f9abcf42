"""Every old import path still imports for one release: it warns with a DeprecationWarning that
names the new place and gives the very object the new place holds."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

from heterolora._deprecated import MOVED_MODULES, MOVED_NAMES

NAMES = [(old, name, target) for old, table in MOVED_NAMES.items() for name, target in table.items()]


@pytest.mark.parametrize(("old", "name", "target"), NAMES)
def test_a_moved_name_warns_and_is_the_same_object(old: str, name: str, target: str) -> None:
    new_module, _, new_name = target.partition(":")
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new_module}.{new_name or name}"):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new_module), new_name or name)


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_a_moved_module_warns_and_serves_the_new_one(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    target = importlib.import_module(new)
    public = [n for n in vars(target) if not n.startswith("_")]
    assert all(getattr(module, n) is getattr(target, n) for n in public)


def test_current_paths_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from heterolora.engine import compute_plan  # noqa: F401
        from heterolora.shortcuts import shortcut_candidates  # noqa: F401


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import heterolora.engine

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        heterolora.engine.nope  # noqa: B018
