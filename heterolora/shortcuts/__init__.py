"""LoRA-adapted shortcut connections (the paper, §2.2, arXiv 2406.14956): modules, hooks,
planning. See docs/shortcuts.md."""

from heterolora._deprecated import moved_name
from heterolora.shortcuts.attach import (
    attach_shortcuts,
    check_plan_layout,
    load_shortcut_weights,
    shortcut_parameters,
)
from heterolora.shortcuts.hooks import (
    CONTAINER,
    ROUTES,
    ShortcutRouter,
    get_router,
    remove_shortcuts,
    shortcut_state_dict,
    site_name,
)
from heterolora.shortcuts.layout import Layout, find_layout
from heterolora.shortcuts.modules import LowRankShortcut, ShortcutProbe
from heterolora.shortcuts.planning import (
    is_shortcut,
    reference_weight,
    scoring_probes,
    shortcut_candidates,
    shortcut_section,
)

__all__ = [
    "CONTAINER",
    "ROUTES",
    "Layout",
    "LowRankShortcut",
    "ShortcutProbe",
    "ShortcutRouter",
    "attach_shortcuts",
    "check_plan_layout",
    "find_layout",
    "get_router",
    "is_shortcut",
    "load_shortcut_weights",
    "reference_weight",
    "remove_shortcuts",
    "scoring_probes",
    "shortcut_candidates",
    "shortcut_parameters",
    "shortcut_section",
    "shortcut_state_dict",
    "site_name",
]


def __getattr__(name: str) -> object:
    return moved_name(__name__, name)
