"""Shortcut units: every LoRA-adapted shortcut site (heterolora.shortcuts) attached at its rank,
switched on and off like a LoRA unit, and scored with the engine's proxies like static shortcuts.

Switched off, a shortcut's term is zero and its factors take no part in the forward pass (no
gradient), which is the authors' `disable_projectors`: a residual falls back to the plain identity
and a cross-layer shortcut contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from heterolora.dynamic.units import CandidateUnit
from heterolora.shortcuts import LowRankShortcut, ShortcutProbe, find_layout, get_router, shortcut_candidates
from heterolora.shortcuts.hooks import install


class SwitchableShortcut(LowRankShortcut):
    """A LowRankShortcut with an on/off switch (same parameters and names: A, B)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enabled = True

    def term(self, u: torch.Tensor) -> torch.Tensor:
        # Off: a zero term built without A or B, so they get no gradient.
        return super().term(u) if self.enabled else torch.zeros_like(u)


class LiveProbe(ShortcutProbe):
    """Scoring stand-in: the zero full-rank probe P plus the shortcut's current low-rank term, so
    dL/dP is the gradient at this site *through* the trained shortcut (the shortcut analogue of
    scoring a LoRA site's base weight through its adapter)."""

    def __init__(self, shortcut: SwitchableShortcut) -> None:
        super().__init__(shortcut.d, dtype=shortcut.A.dtype, device=shortcut.A.device)
        self.shortcut = shortcut

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return super().forward(u) + self.shortcut.term(u)


@dataclass
class ShortcutUnit(CandidateUnit):
    """One shortcut site of one layer (residual1, residual2, shortcut_sa, shortcut_ffn); its
    candidate is named like the attached module, with d_in = d_out = hidden size."""

    module: Any = field(default=None, repr=False)  # SwitchableShortcut
    kind: str = "shortcut"

    @property
    def rank(self) -> int:
        return self.module.rank

    @property
    def alpha(self) -> float:
        return float(self.module.alpha)

    @property
    def enabled(self) -> bool:
        return self.module.enabled

    def enable(self, on: bool) -> None:
        self.module.enabled = on

    def parameters(self) -> list[nn.Parameter]:
        return [self.module.A, self.module.B]


def attach_all_shortcuts(model: nn.Module, rank: int, alpha: float) -> list[ShortcutUnit]:
    """Attach a switchable shortcut (A Kaiming-uniform, B = 0) at every site of `model` (the
    transformers model, inside the PEFT wrapper) and return them as units."""
    layout = find_layout(model)
    sites = shortcut_candidates(model)
    modules: dict[int, dict[str, nn.Module]] = {}
    units = []
    for c in sites:
        ref = next(model.get_submodule(f"{layout.layers}.{c.layer}").parameters())
        module = SwitchableShortcut(layout.hidden_size, rank, alpha, dtype=ref.dtype, device=ref.device)
        modules.setdefault(c.layer, {})[c.type] = module
        units.append(ShortcutUnit(c, module))
    install(model, layout, modules)
    return units


def shortcut_units(model: nn.Module) -> list[ShortcutUnit]:
    """The switchable shortcuts attached to `model` (PEFT-wrapped or not), in layer order."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    router = get_router(inner)
    if router is None:
        return []
    units = []
    for c in shortcut_candidates(inner):
        module = dict(router.modules(c.layer).items()).get(c.type)  # nn.ModuleDict has no .get
        if isinstance(module, SwitchableShortcut):
            units.append(ShortcutUnit(c, module))
    return units


@contextmanager
def live_probes(model: nn.Module, units: Sequence[ShortcutUnit]) -> Iterator[None]:
    """Swap a LiveProbe in for every shortcut unit while scoring; put the shortcuts back after."""
    router = get_router(model)
    if router is None:
        raise ValueError("shortcut units but no shortcuts attached to this model")
    swapped = []
    try:
        for u in units:
            container = router.modules(u.layer)
            container[u.type] = LiveProbe(u.module)
            swapped.append(u)
        yield
    finally:
        for u in swapped:
            router.modules(u.layer)[u.type] = u.module
