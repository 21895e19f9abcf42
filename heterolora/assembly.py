"""The last phases: the chosen ranks become plan entries, the gradient init (when asked for) is
built for those entries from the scoring pass, and the Plan is assembled with its budget record,
settings and timings."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from heterolora.budget import PlanBudget
from heterolora.config import AllocationConfig, FractionBudget, LikeBudget, budget_kind
from heterolora.errors import ConfigError
from heterolora.init.build import InitArtifact, build_init, module_sites
from heterolora.init.step import chosen_step_init
from heterolora.plans import BudgetInfo, ModuleEntry, Plan
from heterolora.scoring import SiteScores
from heterolora.search_space import head_modules, model_info
from heterolora.shortcuts import shortcut_section
from heterolora.sites import SearchSpace
from heterolora.training import DEFAULT_TRAINING_RATE, training_section


def assemble(
    model: nn.Module,
    config: AllocationConfig,
    space: SearchSpace,
    budget: PlanBudget,
    scored: SiteScores,
    rank_of: dict[str, int],
    batches: list[dict[str, torch.Tensor]],
    *,
    model_id: str,
    revision: str | None,
    labels: list[int | str] | None,
    t0: float,
    computed_here: bool,
    world_size: int = 1,
) -> Plan:
    """The Plan for the chosen ranks: entries, the gradient init (when the config asks for it; its
    step may be chosen on the scoring `batches`), timings (`t0`: when the plan started;
    `computed_here`: scored in this call, not reused)."""
    modules = plan_modules(scored, rank_of, config)
    init, init_s, step = None, None, None
    if config.init == "gradient":  # the plan carries its A/B init
        started = time.perf_counter()
        init, step = gradient_init(scored, modules, config, model, batches)
        init_s = time.perf_counter() - started
    timings = plan_timings(scored, t0, computed_here, init_s)
    return assemble_plan(model, config, space, budget, scored, modules, model_id=model_id, revision=revision,
                         labels=labels, timings=timings, init=init, init_step=step, world_size=world_size)  # fmt: skip


def plan_modules(scored: SiteScores, rank_of: dict[str, int], config: AllocationConfig) -> list[ModuleEntry]:
    """One entry per candidate (rank 0: not adapted), with its alpha and top score."""
    scores = {n: (v[-1] if isinstance(v, list) else float(v)) for n, v in scored.raw.items()}
    candidates = scored.sites + scored.shortcut_sites
    one_alpha = rslora_alpha(config, {c.name: (rank_of[c.name], c.d_in + c.d_out) for c in candidates})
    return [
        ModuleEntry.from_candidate(
            c, rank=rank_of[c.name], alpha=one_alpha or config.alpha_ratio * rank_of[c.name], score=scores[c.name]
        )
        for c in candidates
    ]


def rslora_alpha(config: AllocationConfig, sites: dict[str, tuple[int, int]]) -> float | None:
    """With `use_rslora`, the one alpha of every module (PEFT scales by alpha / sqrt(r)): chosen so
    that a module at the reference rank gets the constant mode's scale `alpha_ratio`, i.e.
    alpha = alpha_ratio * sqrt(r_ref). r_ref is the budget's rank for a `like` budget (uniform r = 2
    on all six types: alpha = 2 sqrt(2)), else the plan's mean rank per parameter. None without
    rsLoRA (alpha = alpha_ratio * r per module)."""
    if not config.use_rslora:
        return None
    if isinstance(config.budget, LikeBudget):
        reference = float(config.budget.like.r)
    else:
        weight = sum(width for rank, width in sites.values() if rank > 0)
        reference = sum(rank * width for rank, width in sites.values()) / weight if weight else 1.0
    return config.alpha_ratio * math.sqrt(reference)


def gradient_init(
    scored: SiteScores,
    modules: list[ModuleEntry],
    config: AllocationConfig,
    model: nn.Module | None = None,
    batches: list[dict[str, torch.Tensor]] | None = None,
) -> tuple[InitArtifact | None, float | None]:
    """The plan's A/B init from the scoring pass's gradients (docs/plan-format.md, "Initialisation"),
    and the gora step it was built with. With `init_step="line_search"` (gora) the step is chosen on
    the last scoring batch (heterolora.init.step); no init when no step lowers that batch's loss."""
    if scored.gradients is None:
        raise ConfigError("these scores were computed without init='gradient'; score again", field="init")
    sites = module_sites(modules, config.use_rslora)
    rate = config.learning_rate or DEFAULT_TRAINING_RATE
    searched = config.init_step in ("line_search", "lora_one")
    if config.init_variant == "gora" and searched and model is not None and batches:
        return chosen_step_init(
            model, scored.gradients, sites, batches[-1], seed=config.seed, learning_rate=rate, rule=config.init_step
        )
    init = build_init(scored.gradients, sites, variant=config.init_variant, seed=config.seed, learning_rate=rate)
    return init, rate if config.init_variant == "gora" else None


def assemble_plan(
    model: nn.Module,
    config: AllocationConfig,
    space: SearchSpace,
    budget: PlanBudget,
    scored: SiteScores,
    modules: list[ModuleEntry],
    *,
    model_id: str,
    revision: str | None,
    labels: list[int | str] | None,
    timings: dict[str, float],
    init: InitArtifact | None = None,
    init_step: float | None = None,
    world_size: int = 1,
) -> Plan:
    used = sum(m.params for m in modules)
    extra: dict[str, Any] = {"init": init.info} if init is not None else {}
    extra["training"] = training_section(config, init_step)
    plan = Plan.build(
        model=model_info(model, model_id, revision, space.num_layers),
        task=config.task,
        proxy=config.proxy,
        seed=config.seed,
        budget=BudgetInfo(
            kind=budget_kind(config.budget),
            request=config.budget.model_dump(),
            limit=used if isinstance(config.budget, FractionBudget) else budget.limit,
            used=used,
        ),
        modules=modules,
        use_rslora=config.use_rslora,
        fan_in_fan_out=any(c.conv1d for c in scored.sites),
        modules_to_save=head_modules(model),
        settings=config.model_dump(exclude={"task", "proxy", "seed", "budget"})
        | {"batches": scored.batches, "scoring_mode": scored.scoring, "scoring_passes": scored.passes}
        | {"weights_dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
        | {"world_size": world_size},  # processes that planned together (heterolora/distributed.py)
        labels=labels or None,
        shortcuts=shortcut_section(model, config, len(scored.shortcut_sites)) if scored.shortcut_sites else None,
        timings=timings,
        **extra,
    )
    return plan.attach_init_data(init.data) if init is not None else plan


def plan_timings(scored: SiteScores, t0: float, computed_here: bool, init_s: float | None) -> dict[str, float]:
    """Seconds spent on this plan: scoring (0 when reused from a cache), the whole call and, with a
    gradient init, building it; and the torch intra-op threads it ran on (heterolora/threads.py)."""
    elapsed = time.perf_counter() - t0
    total = elapsed if computed_here else elapsed + scored.scoring_s
    timings = {
        "scoring_s": round(scored.scoring_s, 4),
        "total_s": round(total, 4),
        "torch_threads": torch.get_num_threads(),
    }
    return timings if init_s is None else timings | {"init_s": round(init_s, 4)}
