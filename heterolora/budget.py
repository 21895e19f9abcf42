"""The budget, in one place: what a budget form means in parameters on a model, how it splits
between the LoRA and shortcut families, and the one check that rejects a budget below the cheapest
module. The static planner (engine, allocation) and the dynamic one (heterolora.dynamic) use it.

The family split is the paper's (arXiv 2406.14956): a fraction p activates floor(p·n_L) LoRA
modules and round(p·n_S) shortcut modules; a parameter budget in separated mode gives the shortcut
family floor(shortcut_share · limit) parameters and the LoRA family the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from heterolora.config import AllocationConfig, FractionBudget, LikeBudget, ParamsBudget
from heterolora.errors import BudgetError
from heterolora.search_space import Candidate

if TYPE_CHECKING:
    from torch import nn

    from heterolora.sites import SearchSpace


def family_counts(fraction: float, n_lora: int, n_shortcut: int, *, min_shortcut: int = 0) -> tuple[int, int]:
    """Modules a fraction activates per family: floor(p·n_L) LoRA (at least one) and round(p·n_S)
    shortcuts (at least `min_shortcut`); a family with no candidates gets none."""
    lora = max(1, math.floor(fraction * n_lora)) if n_lora else 0
    shortcut = max(min_shortcut, round(fraction * n_shortcut)) if n_shortcut else 0
    return lora, shortcut


def family_limits(limit: int, shortcut_share: float) -> dict[str, int]:
    """Separated mode: each family's share of a parameter limit."""
    share = math.floor(shortcut_share * limit)
    return {"lora": limit - share, "shortcut": share}


def check_cheapest(
    limit: int,
    cheapest: int,
    *,
    whose: str = "the budget",
    cost: str = "",
    field: str = "budget",
    hint: str = "",
    unit: str = "cheapest module",
) -> None:
    """The one "budget below the cheapest module" error: BudgetError when `limit` < `cheapest`."""
    if limit < cheapest:
        cost = cost or f"{cheapest} parameters"
        raise BudgetError(f"{whose} ({limit} parameters) is below the {unit} ({cost}){hint}", field=field)


class Costed(Protocol):
    @property
    def cost_per_rank(self) -> int: ...


def check_sites_fit(limit: int, sites: Sequence[Costed], rank: int, **words: str) -> None:
    """BudgetError unless `limit` pays for the cheapest of `sites` (candidates or items) at `rank`."""
    cheapest = min(c.cost_per_rank for c in sites) * rank
    check_cheapest(limit, cheapest, cost=f"rank {rank} costs {cheapest}", **words)


def resolve_limit(config: AllocationConfig, all_sites: list[Candidate]) -> int:
    """The parameter limit a budget form means on this model (fraction mode: resolved later)."""
    budget = config.budget
    if isinstance(budget, ParamsBudget):
        return budget.trainable_params
    if isinstance(budget, LikeBudget):
        present = {c.type for c in all_sites}
        wanted = set(budget.like.types)
        if wanted & {"q", "k", "v"} and not present & {"q", "k", "v"} and "qkv" in present:
            wanted = (wanted - {"q", "k", "v"}) | {"qkv"}  # fused attention (GPT-2): match on c_attn
        missing = sorted(wanted - present)
        if missing:
            raise BudgetError(
                f"budget.like.types {missing} do not exist in this model (it has {sorted(present)})",
                field="budget.like.types",
            )
        return sum(budget.like.r * c.cost_per_rank for c in all_sites if c.type in wanted)
    return 0


def check_family_budgets(
    lora: list[Candidate], shortcuts: list[Candidate], ranks: list[int], limit: int, config: AllocationConfig
) -> dict[str, int]:
    """Separated mode with a parameter budget: each family's limit, or BudgetError when a share
    cannot pay for its cheapest module (cheap, so the engine calls it before scoring)."""
    limits = family_limits(limit, config.shortcut_share)
    for family, sites in (("lora", lora), ("shortcut", shortcuts)):
        check_sites_fit(
            limits[family],
            sites,
            ranks[0],
            whose=f"separated mode: the {family} share of the budget",
            field="shortcut_share",
            hint="; raise the budget or change shortcut_share",
        )
    return limits


@dataclass(frozen=True)
class PlanBudget:
    """A checked budget: the parameter limit (fraction mode: 0, the plan counts what it uses), the
    rank set the allocation chooses from, and the family split: modules per family (a fraction)
    or parameters per family (separated shortcut mode with a parameter budget)."""

    limit: int
    ranks: list[int]
    counts: dict[str, int] | None = None
    limits: dict[str, int] | None = None


def split_budget(
    config: AllocationConfig, limit: int, ranks: list[int], lora: list[Candidate], shortcuts: list[Candidate]
) -> PlanBudget:
    """The family split of a resolved limit (BudgetError when a family's share cannot pay for its
    cheapest module)."""
    if isinstance(config.budget, FractionBudget):
        counts = family_counts(config.budget.fraction, len(lora), len(shortcuts))
        return PlanBudget(limit, ranks, counts=dict(zip(("lora", "shortcut"), counts, strict=True)))
    if shortcuts and config.shortcut_mode == "separated":
        return PlanBudget(limit, ranks, limits=check_family_budgets(lora, shortcuts, ranks, limit, config))
    return PlanBudget(limit, ranks)


def check_plan_budget(model: nn.Module, config: AllocationConfig, space: SearchSpace) -> PlanBudget:
    """Resolve the budget to a parameter limit and reject impossible ones before any scoring."""
    limit = resolve_limit(config, space.all_sites)
    total = sum(p.numel() for p in model.parameters())
    if limit >= total:
        raise BudgetError(f"budget of {limit} parameters is not below the model's total of {total}", field="budget")
    ranks = config.scoring_ranks()
    if not isinstance(config.budget, FractionBudget):
        check_sites_fit(limit, space.sites, ranks[0])
    return split_budget(config, limit, ranks, space.sites, space.shortcut_sites)
