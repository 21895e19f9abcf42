"""Turn scores into ranks under a parameter budget. The whole rule, in one place.

Every site i has a cost per rank c_i = d_in + d_out and a value curve V_i(r) over the rank set
(a proxy either gives the curve, or a scalar score s_i that becomes V_i(r) = s_i * ln(1 + r/r_min):
diminishing returns, so the rank a site gets grows with its score per parameter instead of the
whole budget landing on the few top-scored sites).

We maximise sum_i V_i(r_i) subject to sum_i c_i r_i <= limit. Greedy on marginal value per
parameter is optimal for concave curves up to the last, partly fitting step; curves are made
concave first (upper hull), and a step that does not fit is skipped while cheaper ones continue,
which fills the budget to within one step of the limit.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from heterolora.budget import PlanBudget, check_sites_fit, split_budget
from heterolora.config import SHORTCUT_TYPES, AllocationConfig
from heterolora.search_space import Candidate

if TYPE_CHECKING:
    from heterolora.scoring import SiteScores


@dataclass(frozen=True)
class Item:
    name: str
    cost_per_rank: int
    curve: list[float]  # V(r) for each r in the rank set (ascending)
    group: str = ""  # layer or type, for normalisation


def tie_key(seed: int, name: str) -> int:
    """Seeded, process-independent tie-break: every process orders equal scores the same way."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def scalar_curve(score: float, ranks: list[int]) -> list[float]:
    return [score * math.log1p(r / ranks[0]) for r in ranks]


def normalize(curves: dict[str, list[float]], groups: dict[str, str]) -> dict[str, list[float]]:
    """Divide each curve by the mean top value of its group (per layer or per type), so no group
    wins only because its gradients are larger (e.g. layers next to a freshly initialised head)."""
    totals: dict[str, list[float]] = {}
    for name, curve in curves.items():
        totals.setdefault(groups[name], []).append(curve[-1])
    means = {g: sum(v) / len(v) for g, v in totals.items()}
    return {n: [v / means[groups[n]] if means[groups[n]] > 0 else 0.0 for v in c] for n, c in curves.items()}


def _hull(costs: list[int], values: list[float]) -> list[int]:
    """Indices (into [0] + ranks) of the upper concave hull of (cost, value), starting at 0."""
    pts = [(0, 0.0), *zip(costs, values, strict=True)]
    idx = [0]
    for j in range(1, len(pts)):
        if pts[j][1] < pts[idx[-1]][1]:
            continue  # value must not drop with rank
        while len(idx) >= 2:
            (x0, y0), (x1, y1), (x2, y2) = pts[idx[-2]], pts[idx[-1]], pts[j]
            if (y1 - y0) * (x2 - x1) <= (y2 - y1) * (x1 - x0):  # middle point under the chord
                idx.pop()
            else:
                break
        idx.append(j)
    return idx


def allocate_ranks(items: list[Item], ranks: list[int], limit: int, seed: int) -> dict[str, int]:
    """Rank per item (0 = not adapted) with sum(c_i * r_i) <= limit."""
    check_sites_fit(limit, items, ranks[0])
    levels = [0, *ranks]
    hulls = {it.name: _hull([it.cost_per_rank * r for r in ranks], it.curve) for it in items}
    by_name = {it.name: it for it in items}
    heap: list[tuple[float, int, str, int]] = []

    def push(name: str, pos: int) -> None:  # step from hull[pos] to hull[pos + 1]
        h = hulls[name]
        if pos + 1 < len(h):
            it = by_name[name]
            a, b = h[pos], h[pos + 1]
            gain = (it.curve[b - 1] if b else 0.0) - (it.curve[a - 1] if a else 0.0)
            density = gain / (it.cost_per_rank * (levels[b] - levels[a]))
            heapq.heappush(heap, (-density, tie_key(seed, name), name, pos))

    for it in items:
        push(it.name, 0)
    rank = {it.name: 0 for it in items}
    used = 0
    while heap:
        _, _, name, pos = heapq.heappop(heap)
        h, it = hulls[name], by_name[name]
        step = it.cost_per_rank * (levels[h[pos + 1]] - levels[h[pos]])
        if used + step <= limit:
            used += step
            rank[name] = levels[h[pos + 1]]
            push(name, pos + 1)
    return rank


def select_top(scores: dict[str, float], count: int, seed: int) -> set[str]:
    """The paper's mode: the `count` best-scored names, ties broken by the seeded key."""
    order = sorted(scores, key=lambda n: (-scores[n], tie_key(seed, n)))
    return set(order[:count])


def choose(scored: SiteScores, config: AllocationConfig, budget: PlanBudget) -> dict[str, int]:
    """Ranks per candidate name from the scores: the allocation rule (docs/allocation.md)."""
    ranks, candidates = scored.ranks, scored.sites + scored.shortcut_sites
    curves = {n: (list(v) if isinstance(v, list) else scalar_curve(v, ranks)) for n, v in scored.raw.items()}
    if config.normalize != "none":
        groups = {c.name: str(c.layer if config.normalize == "layer" else c.type) for c in candidates}
        curves = normalize(curves, groups)
    if scored.shortcut_sites:
        return _choose_families(scored.sites, scored.shortcut_sites, curves, budget, config)
    if budget.counts is not None:
        chosen = select_top({n: c[-1] for n, c in curves.items()}, budget.counts["lora"], config.seed)
        return {c.name: (ranks[0] if c.name in chosen else 0) for c in scored.sites}
    items = [Item(c.name, c.cost_per_rank, curves[c.name]) for c in scored.sites]
    return allocate_ranks(items, ranks, budget.limit, config.seed)


def family_groups(candidates: list[Candidate]) -> dict[str, str]:
    return {c.name: ("shortcut" if c.type in SHORTCUT_TYPES else "lora") for c in candidates}


def choose_ranks(
    lora: list[Candidate],
    shortcuts: list[Candidate],
    curves: dict[str, list[float]],
    ranks: list[int],
    limit: int,
    config: AllocationConfig,
) -> dict[str, int]:
    """Ranks over both families (see `_choose_families`) under `limit`, split per family."""
    return _choose_families(lora, shortcuts, curves, split_budget(config, limit, ranks, lora, shortcuts), config)


def _choose_families(
    lora: list[Candidate],
    shortcuts: list[Candidate],
    curves: dict[str, list[float]],
    budget: PlanBudget,
    config: AllocationConfig,
) -> dict[str, int]:
    """Ranks over both families. `combined`: one ranking after dividing every curve by its
    family's mean top value (so each family averages 1 and raw gradient scales, which differ
    between a projection and a residual map, do not decide the mix). `separated`: each family
    is allocated on its own, with its own share of the budget."""
    if budget.counts is not None:  # a fraction: budget.ranks is its one rank
        rank = budget.ranks[0]
        if config.shortcut_mode == "combined":
            normed = normalize(curves, family_groups(lora + shortcuts))
            chosen = select_top({n: c[-1] for n, c in normed.items()}, sum(budget.counts.values()), config.seed)
            return {c.name: (rank if c.name in chosen else 0) for c in lora + shortcuts}
        out = {}
        for family, sites in (("lora", lora), ("shortcut", shortcuts)):
            chosen = select_top({c.name: curves[c.name][-1] for c in sites}, budget.counts[family], config.seed)
            out |= {c.name: (rank if c.name in chosen else 0) for c in sites}
        return out
    if budget.limits is None:  # combined
        normed = normalize(curves, family_groups(lora + shortcuts))
        items = [Item(c.name, c.cost_per_rank, normed[c.name]) for c in lora + shortcuts]
        return allocate_ranks(items, budget.ranks, budget.limit, config.seed)
    out = {}
    for family, sites in (("lora", lora), ("shortcut", shortcuts)):
        items = [Item(c.name, c.cost_per_rank, curves[c.name]) for c in sites]
        out |= allocate_ranks(items, budget.ranks, budget.limits[family], config.seed)
    return out
