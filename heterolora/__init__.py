"""HeteroLoRA: heterogeneous LoRA rank plans from zero-cost proxies.

Light names (Plan, AllocationConfig, errors) import without torch; engine functions load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heterolora import _deprecated
from heterolora._version import __version__ as __version__
from heterolora.config import AllocationConfig as AllocationConfig
from heterolora.errors import HeteroLoraError as HeteroLoraError
from heterolora.plans import Plan as Plan

if TYPE_CHECKING:
    from heterolora.apply import apply_plan as apply_plan
    from heterolora.apply import load_adapted as load_adapted
    from heterolora.apply import save_adapted as save_adapted
    from heterolora.engine import compute_plan as compute_plan
    from heterolora.init.apply import LearningRateWarning as LearningRateWarning
    from heterolora.init.apply import check_optimizer as check_optimizer
    from heterolora.init.build import init_for_ranks as init_for_ranks
    from heterolora.loading import load_model as load_model
    from heterolora.optim import make_optimizer as make_optimizer
    from heterolora.planner import plan as plan

_deprecated.install()  # old import paths still work for one release, with a warning

_LAZY = {
    "plan": "heterolora.planner",
    "compute_plan": "heterolora.engine",
    "apply_plan": "heterolora.apply",
    "save_adapted": "heterolora.apply",
    "load_adapted": "heterolora.apply",
    "check_optimizer": "heterolora.init.apply",
    "LearningRateWarning": "heterolora.init.apply",
    "init_for_ranks": "heterolora.init.build",
    "load_model": "heterolora.loading",
    "make_optimizer": "heterolora.optim",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'heterolora' has no attribute {name!r}")


__all__ = [
    "AllocationConfig",
    "HeteroLoraError",
    "LearningRateWarning",
    "Plan",
    "__version__",
    "apply_plan",
    "check_optimizer",
    "compute_plan",
    "init_for_ranks",
    "load_adapted",
    "load_model",
    "make_optimizer",
    "plan",
    "save_adapted",
]
