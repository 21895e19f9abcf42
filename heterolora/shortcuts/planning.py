"""Shortcuts in the search space: candidates, scoring probes, plan section. Their ranks are chosen
with the LoRA sites' in heterolora/allocation.py, under the family split of heterolora/budget.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from heterolora._deprecated import moved_name
from heterolora.config import SHORTCUT_TYPES, AllocationConfig
from heterolora.search_space import Candidate, weight_of
from heterolora.shortcuts.hooks import CONTAINER, install, remove_shortcuts, site_name
from heterolora.shortcuts.layout import Layout, find_layout
from heterolora.shortcuts.modules import ShortcutProbe

SECTION_VERSION = 1
BASES = {"residual1": "identity", "residual2": "identity", "shortcut_sa": "zero", "shortcut_ffn": "zero"}


def is_shortcut(c: Candidate) -> bool:
    return c.type in SHORTCUT_TYPES


def shortcut_candidates(model: nn.Module, layers: list[int] | None = None) -> list[Candidate]:
    """4 per layer (no shortcut_ffn in layer 0), each a d×d site: rank r costs r·2·d parameters."""
    layout = find_layout(model)
    count = len(model.get_submodule(layout.layers))
    d = layout.hidden_size
    return [
        Candidate(site_name(layout, i, kind), kind, i, d, d)
        for i in range(count)
        if layers is None or i in layers
        for kind in SHORTCUT_TYPES
        if not (kind == "shortcut_ffn" and i == 0)
    ]


def _layer_params(model: nn.Module, layout: Layout, i: int) -> nn.Parameter:
    return next(model.get_submodule(f"{layout.layers}.{i}").parameters())


@contextmanager
def scoring_probes(model: nn.Module, candidates: list[Candidate]) -> Iterator[None]:
    """Attach a zero ShortcutProbe at every shortcut candidate for the duration of scoring, so the
    proxies see the shortcut sites as ordinary `.weight`-carrying modules; removed afterwards."""
    if not candidates:
        yield
        return
    layout = find_layout(model)
    probes: dict[int, dict[str, nn.Module]] = {}
    for c in candidates:
        ref = _layer_params(model, layout, c.layer)
        probes.setdefault(c.layer, {})[c.type] = ShortcutProbe(c.d_in, dtype=ref.dtype, device=ref.device)
    install(model, layout, probes)
    try:
        yield
    finally:
        remove_shortcuts(model)


def reference_weight(model: nn.Module, cand: Candidate) -> torch.Tensor:
    """What SNIP and SynFlow multiply a site's gradient with. LoRA sites: the base weight. Shortcut
    sites: the identity. For residuals that is their actual base (the residual connection); cross
    shortcuts have a zero base, which would score 0 everywhere, so they are scored as the identity
    skip they would become at full strength (the ResNet shortcut), on the same footing."""
    if not is_shortcut(cand):
        return weight_of(model, cand)
    w = model.get_submodule(cand.name).weight
    return torch.eye(w.shape[0], dtype=w.dtype, device=w.device)


def shortcut_section(model: nn.Module, config: AllocationConfig, candidates: int) -> dict[str, Any]:
    """The plan's machine-readable shortcut section: everything apply needs besides the entries."""
    layout = find_layout(model)
    return {
        "version": SECTION_VERSION,
        "layout": layout.as_dict(),
        "container": CONTAINER,
        "bases": BASES,
        "scaling": "alpha/sqrt(r)" if config.use_rslora else "alpha/r",
        "init": {"A": "kaiming_uniform(a=sqrt(5))", "B": "zeros"},
        "mode": config.shortcut_mode,
        "share": config.shortcut_share if config.shortcut_mode == "separated" else None,
        "family_normalization": "mean" if config.shortcut_mode == "combined" else None,
        "candidates": candidates,
    }


def __getattr__(name: str) -> object:
    return moved_name(__name__, name)
