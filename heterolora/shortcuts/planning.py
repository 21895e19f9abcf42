"""Shortcuts in the search space: candidates, scoring probes, selection per family, plan section."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from heterolora.allocation import Item, allocate_ranks, normalize, select_top
from heterolora.config import SHORTCUT_TYPES, AllocationConfig, FractionBudget
from heterolora.errors import BudgetError
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


def family_groups(candidates: list[Candidate]) -> dict[str, str]:
    return {c.name: ("shortcut" if is_shortcut(c) else "lora") for c in candidates}


def choose_ranks(
    lora: list[Candidate],
    shortcuts: list[Candidate],
    curves: dict[str, list[float]],
    ranks: list[int],
    limit: int,
    config: AllocationConfig,
) -> dict[str, int]:
    """Ranks over both families. `combined`: one ranking after dividing every curve by its
    family's mean top value (so each family averages 1 and raw gradient scales, which differ
    between a projection and a residual map, do not decide the mix). `separated`: each family
    is allocated on its own, with its own budget."""
    budget = config.budget
    if config.shortcut_mode == "combined":
        normed = normalize(curves, family_groups(lora + shortcuts))
        if isinstance(budget, FractionBudget):
            count = _fraction_count(len(lora), budget.fraction) + round(budget.fraction * len(shortcuts))
            chosen = select_top({n: c[-1] for n, c in normed.items()}, count, config.seed)
            return {c.name: (budget.rank if c.name in chosen else 0) for c in lora + shortcuts}
        items = [Item(c.name, c.cost_per_rank, normed[c.name]) for c in lora + shortcuts]
        return allocate_ranks(items, ranks, limit, config.seed)
    if isinstance(budget, FractionBudget):  # the paper: floor(p·n_L) LoRA and round(p·n_S) shortcuts
        counts = {
            "lora": _fraction_count(len(lora), budget.fraction),
            "shortcut": round(budget.fraction * len(shortcuts)),
        }
        out = {}
        for family, sites in (("lora", lora), ("shortcut", shortcuts)):
            chosen = select_top({c.name: curves[c.name][-1] for c in sites}, counts[family], config.seed)
            out |= {c.name: (budget.rank if c.name in chosen else 0) for c in sites}
        return out
    limits = check_family_budgets(lora, shortcuts, ranks, limit, config)
    return _allocate(lora, curves, ranks, limits["lora"], config) | _allocate(
        shortcuts, curves, ranks, limits["shortcut"], config
    )


def check_family_budgets(
    lora: list[Candidate], shortcuts: list[Candidate], ranks: list[int], limit: int, config: AllocationConfig
) -> dict[str, int]:
    """Separated mode with a parameter budget: each family's limit, or BudgetError when a share
    cannot pay for its cheapest module (cheap, so the engine calls it before scoring)."""
    share = math.floor(config.shortcut_share * limit)
    limits = {"lora": limit - share, "shortcut": share}
    for family, sites in (("lora", lora), ("shortcut", shortcuts)):
        cheapest = min(c.cost_per_rank for c in sites) * ranks[0]
        if limits[family] < cheapest:
            raise BudgetError(
                f"separated mode: the {family} share of the budget ({limits[family]} parameters) is below its "
                f"cheapest module (rank {ranks[0]} costs {cheapest}); raise the budget or change shortcut_share",
                field="shortcut_share",
            )
    return limits


def _fraction_count(n: int, fraction: float) -> int:
    return max(1, math.floor(fraction * n))


def _allocate(
    sites: list[Candidate], curves: dict[str, list[float]], ranks: list[int], limit: int, config: AllocationConfig
) -> dict[str, int]:
    items = [Item(c.name, c.cost_per_rank, curves[c.name]) for c in sites]
    return allocate_ranks(items, ranks, limit, config.seed)


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
