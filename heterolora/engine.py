"""compute_plan, the planning pipeline on a loaded model and tokenised batches; each phase is a
module of its own:

    sites       discover the search space once (LoRA sites, shortcut sites)
    budget      resolve the budget to a parameter limit, reject impossible ones before scoring
    scoring     run the proxy over every site (or reuse cached scores)
    allocation  choose a rank per site under the budget
    assembly    plan entries, the gradient init for them, the Plan

heterolora.planner runs it on a model id and samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from heterolora._deprecated import moved_name
from heterolora.allocation import choose
from heterolora.assembly import assemble
from heterolora.budget import check_plan_budget
from heterolora.config import AllocationConfig
from heterolora.distributed import Group, check_agreement
from heterolora.plans import Plan
from heterolora.proxies.context import Progress
from heterolora.scoring import SiteScores, score_sites, scoring_share
from heterolora.sites import discover_space


def _quiet(fraction: float, message: str) -> None:
    return None


def compute_plan(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    config: AllocationConfig | None = None,
    *,
    model_id: str = "model",
    revision: str | None = None,
    progress: Progress | None = None,
    scored: SiteScores | None = None,
    on_scored: Callable[[SiteScores], None] | None = None,
    labels: list[int | str] | None = None,
    group: Group | None = None,
) -> Plan:
    """Plan heterogeneous LoRA ranks for `model` from scoring `batches` (already tokenised).

    Args:
        model: a transformers model with its task head (seq-cls) or LM head (causal-lm).
        batches: dicts of tensors the model accepts; with `labels` for proxies that need them.
        config: proxy, budget and allocation options.
        progress: called with (fraction 0..1, phase) while planning.
        scored: scores from an earlier call with the same `score_key`, to skip scoring.
        on_scored: receives freshly computed scores (a score cache stores them).
        labels: the class names behind label ids 0..n-1, recorded in the plan.
        group: the process group when several processes plan together (heterolora/distributed.py):
            every rank passes the same model, batches and config, and gets rank 0's plan back.
    """
    config = config or AllocationConfig()
    progress = progress or _quiet
    t0 = time.perf_counter()
    space = discover_space(model, config)  # the only walk over the model's modules
    budget = check_plan_budget(model, config, space)
    if group is not None:
        check_agreement(group, model, batches, config, model_id, revision)
    computed_here = scored is None
    if scored is None:
        progress(0.0, "scoring")
        scored = score_sites(model, batches, config, scoring_share(progress), space, group)
        if on_scored is not None:
            on_scored(scored)
    progress(0.95, "allocating")
    rank_of = choose(scored, config, budget)
    plan = assemble(
        model, config, space, budget, scored, rank_of, batches,
        model_id=model_id, revision=revision, labels=labels, t0=t0, computed_here=computed_here,
        world_size=group.world_size if group else 1,
    )  # fmt: skip
    if group is not None:  # every rank returns rank 0's plan (identical sums give identical plans)
        plan = group.from_main(plan)
    progress(1.0, "done")
    return plan


def __getattr__(name: str) -> object:
    return moved_name(__name__, name)
