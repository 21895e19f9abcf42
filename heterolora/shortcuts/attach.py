"""Attach the shortcuts a plan enables to a model, and move their weights in and out."""

from __future__ import annotations

import torch
from torch import nn

from heterolora.errors import PlanError
from heterolora.plans import Plan
from heterolora.shortcuts.hooks import ShortcutRouter, get_router, install, site_name
from heterolora.shortcuts.layout import Layout, find_layout
from heterolora.shortcuts.modules import LowRankShortcut


def check_plan_layout(model: nn.Module, plan: Plan) -> Layout | None:
    """The layout the plan's shortcuts attach to, checked against `model`; None without shortcuts.
    Cheap, so apply can fail before PEFT has touched the model."""
    chosen = [m for m in plan.shortcut_modules if m.rank > 0]
    if not chosen:
        return None
    if not plan.shortcuts:
        raise PlanError("the plan has shortcut entries but no shortcuts section", field="plan.shortcuts")
    layout = find_layout(model)
    planned = plan.shortcuts.get("layout")
    if planned != layout.as_dict():
        raise PlanError(f"plan's shortcut layout {planned} does not match this model's {layout.as_dict()}")
    for m in chosen:
        if m.name != site_name(layout, m.layer, m.type):
            raise PlanError(f"shortcut entry {m.name!r} does not name layer {m.layer}'s {m.type}", field="plan")
    return layout


def attach_shortcuts(model: nn.Module, plan: Plan) -> ShortcutRouter | None:
    """Create a LowRankShortcut (A Kaiming-uniform, B = 0) for every planned shortcut with rank > 0
    and hook it in; None when the plan enables none. Raises PlanError if the plan was made for a
    different layout."""
    layout = check_plan_layout(model, plan)
    if layout is None:
        return None
    rslora = (plan.shortcuts or {}).get("scaling") == "alpha/sqrt(r)"
    chosen = [m for m in plan.shortcut_modules if m.rank > 0]
    modules: dict[int, dict[str, nn.Module]] = {}
    for m in chosen:
        ref = next(model.get_submodule(f"{layout.layers}.{m.layer}").parameters())
        modules.setdefault(m.layer, {})[m.type] = LowRankShortcut(
            layout.hidden_size, m.rank, m.alpha, rslora=rslora, dtype=ref.dtype, device=ref.device
        )
    router = install(model, layout, modules)
    count = sum(p.numel() for p in router.named_parameters().values())
    used = sum(m.params for m in chosen)
    if count != used:
        raise PlanError(f"created {count} shortcut parameters, the plan says {used}", field="plan")
    return router


def shortcut_parameters(model: nn.Module) -> list[nn.Parameter]:
    router = get_router(model)
    return [] if router is None else list(router.named_parameters().values())


def load_shortcut_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved shortcut weights into the attached modules; every key must match exactly."""
    router = get_router(model)
    have = {} if router is None else router.named_parameters()
    if set(have) != set(state):
        diff = sorted(set(have) ^ set(state))[:3]
        raise PlanError(f"saved shortcut weights do not match the plan's shortcuts, e.g. {diff}", field="plan")
    with torch.no_grad():
        for name, tensor in state.items():
            have[name].copy_(tensor)
