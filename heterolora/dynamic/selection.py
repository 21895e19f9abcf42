"""Which units are active: rank by score, fill each group's budget. The whole rule, in one place.

Groups: `lora` and `combined` rank all units together; `separated` ranks LoRA and shortcut units
apart, each against its own share of the budget (the authors' three modes: the paper, §5,
arXiv 2406.14956).

Budget per group:
- active_fraction p: floor(p * n_lora) LoRA units and round(p * n_shortcut) shortcut units (the
  authors' counts), at least one of each family present; combined mode pools the two counts.
- active_params P: walk the ranking and take every unit that still fits, so the active parameters
  never exceed P (the same rule as top-k when all units are the same size).

Combined mode ranks each score divided by its family's mean score, as the static planner
(heterolora.shortcuts) does: gradient scales differ between a projection and a residual map, so raw
scores (the authors' choice) would let scale alone decide the LoRA/shortcut mix.

Ties are broken by allocation.tie_key on (seed, reallocation index, name): the same in every
process and every run, but a fresh order at each reallocation, as the authors' re-drawn random
permutation (so an all-tied proxy such as CONSTANT rotates the active set instead of freezing it).
"""

from __future__ import annotations

from collections.abc import Sequence

from heterolora._deprecated import moved_name
from heterolora.allocation import normalize, tie_key
from heterolora.budget import check_cheapest, family_counts, family_limits
from heterolora.dynamic.config import DynamicConfig
from heterolora.dynamic.units import Unit
from heterolora.errors import ConfigError

Group = tuple[list[Unit], int | None, int | None]  # units, count, parameter limit


def groups(units: Sequence[Unit], config: DynamicConfig) -> list[Group]:
    """Independently ranked groups with their count or parameter limit."""
    lora = [u for u in units if u.kind == "lora"]
    shortcut = [u for u in units if u.kind != "lora"]
    if config.mode == "lora" and shortcut:
        raise ConfigError("mode 'lora' with shortcut units: use 'combined' or 'separated'", field="mode")
    if config.mode != "lora" and not shortcut:
        raise ConfigError(f"mode {config.mode!r} needs shortcut units; none were given", field="mode")
    limit = config.active_params
    if limit is not None:
        if config.mode != "separated":
            return [(list(units), None, limit)]
        limits = family_limits(limit, config.shortcut_share)
        return [(lora, None, limits["lora"]), (shortcut, None, limits["shortcut"])]
    p = config.active_fraction or 0.0  # the config guarantees one of the two forms
    n_lora, n_short = family_counts(p, len(lora), len(shortcut), min_shortcut=1)
    if config.mode == "separated":
        return [(lora, n_lora, None), (shortcut, n_short, None)]
    return [(list(units), n_lora + n_short, None)]


def check_active_budget(units: Sequence[Unit], config: DynamicConfig) -> None:
    """Raise BudgetError when a parameter limit cannot hold even the smallest unit of its group."""
    for group, _, limit in groups(units, config):
        if limit is not None:
            smallest = min(u.params for u in group)
            check_cheapest(limit, smallest, whose="active_params", unit="smallest unit", field="active_params")


def score_keys(units: Sequence[Unit], scores: dict[str, float], config: DynamicConfig) -> dict[str, tuple[float]]:
    """Ranking keys: the raw scores, or in combined mode the scores over their family's mean."""
    if config.mode != "combined":
        return {n: (s,) for n, s in scores.items()}
    family = {u.name: u.kind for u in units}
    normed = normalize({n: [s] for n, s in scores.items()}, family)
    return {n: (v[0],) for n, v in normed.items()}


def ranked(keys: dict[str, tuple[float, ...]], seed: int, index: int) -> list[str]:
    """Names by descending key; ties by the seeded, process-independent key of this reallocation."""
    return sorted(keys, key=lambda n: (tuple(-k for k in keys[n]), tie_key(seed, f"{index}:{n}")))


def select(units: Sequence[Unit], keys: dict[str, tuple[float, ...]], config: DynamicConfig, index: int) -> set[str]:
    """Active unit names: the best-ranked units that fit each group's budget."""
    chosen: set[str] = set()
    for group, count, limit in groups(units, config):
        size = {u.name: u.params for u in group}
        order = ranked({n: keys[n] for n in size}, config.seed, index)
        if count is not None:
            chosen.update(order[:count])
            continue
        used, cap = 0, limit or 0
        for name in order:
            if used + size[name] <= cap:
                chosen.add(name)
                used += size[name]
    return chosen


def __getattr__(name: str) -> object:
    return moved_name(__name__, name)
