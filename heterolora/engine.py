"""compute_plan: discover sites once -> check the budget -> score them with a proxy (or reuse
scores) -> allocate ranks -> Plan. heterolora.planner runs it on tokenised samples."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from heterolora.allocation import Item, allocate_ranks, normalize, scalar_curve, select_top
from heterolora.config import (
    AllocationConfig,
    FractionBudget,
    LikeBudget,
    ParamsBudget,
    budget_kind,
)
from heterolora.distributed import Group, check_agreement
from heterolora.errors import BudgetError, ConfigError, DataError
from heterolora.gradient_init import GradientSource, attach_init, build_init, plan_sites, scoring_source
from heterolora.plans import BudgetInfo, ModuleEntry, Plan
from heterolora.proxies import get_proxy
from heterolora.proxies.context import Progress, ProxyContext, batch_loss
from heterolora.search_space import Candidate, head_modules, model_info, select_sites, walk_sites
from heterolora.shortcuts import (
    check_family_budgets,
    choose_ranks,
    reference_weight,
    scoring_probes,
    shortcut_candidates,
    shortcut_section,
)
from heterolora.sketch import resolve_scoring


def _quiet(fraction: float, message: str) -> None:
    return None


@dataclass(frozen=True)
class SearchSpace:
    """One plan's candidates, discovered once and passed down to every step."""

    all_sites: list[Candidate]  # every LoRA site: a `like` budget is sized on these
    sites: list[Candidate]  # the LoRA sites the config's types/layers select
    shortcut_sites: list[Candidate]
    num_layers: int


def discover_space(model: nn.Module, config: AllocationConfig) -> SearchSpace:
    found, num_layers = walk_sites(model)
    sites = select_sites(found, config.types, config.layers, num_layers=num_layers)
    shortcut_sites = shortcut_candidates(model, config.layers) if config.shortcuts else []
    return SearchSpace(found, sites, shortcut_sites, num_layers)


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


@contextmanager
def warmed_up_head(model: nn.Module, batches: list[dict], steps: int, seed: int) -> Iterator[None]:
    """Train only the task head for `steps` steps, then restore it: gradients measured through a
    random head say more about the head than about the site."""
    heads = [model.get_submodule(n) for n in head_modules(model)]
    params = [p for h in heads for p in h.parameters()]
    if steps <= 0 or not params:
        yield
        return
    saved = [p.detach().clone() for p in params]
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=1e-3)
        model.eval()
        device = next(model.parameters()).device
        for step in range(steps):
            batch = {k: v.to(device) for k, v in batches[(step + seed) % len(batches)].items()}
            batch_loss(model, batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None


@dataclass
class SiteScores:
    """A proxy's raw output for one model, sample and scoring setup. Allocation is cheap next to
    scoring, so one SiteScores serves any number of budgets (see `score_key`)."""

    sites: list[Candidate]  # LoRA candidates
    shortcut_sites: list[Candidate]
    raw: dict[str, float] | dict[str, list[float]]  # per name: a score, or a value curve over `ranks`
    ranks: list[int]
    batches: int
    scoring_s: float
    scoring: str = "exact"  # the resolved mode: "exact" or "stream"
    passes: int = 1  # passes over the batches (streamed snip: one per group of sites)
    # init="gradient" only: the scoring pass's gradients, dense (exact) or sketched (stream)
    gradients: GradientSource | None = None


def score_key(config: AllocationConfig) -> str:
    """The options that change raw scores; plans that agree on them can share one SiteScores."""
    fields = {"task", "proxy", "seed", "num_batches", "batch_size", "max_length", "head_warmup_steps"}
    fields |= {"types", "layers", "shortcuts", "scoring", "scoring_memory_mb", "sketch_oversampling", "init"}
    return json.dumps([config.model_dump(include=fields), _scoring_ranks(config)], sort_keys=True)


def _scoring_ranks(config: AllocationConfig) -> list[int]:
    budget = config.budget
    return [budget.rank] if isinstance(budget, FractionBudget) else config.effective_ranks()


def check_budget(model: nn.Module, config: AllocationConfig, space: SearchSpace | None = None) -> int:
    """Resolve the budget to a parameter limit and reject impossible ones before any scoring."""
    space = space or discover_space(model, config)
    limit = resolve_limit(config, space.all_sites)
    total = sum(p.numel() for p in model.parameters())
    if limit >= total:
        raise BudgetError(f"budget of {limit} parameters is not below the model's total of {total}", field="budget")
    if isinstance(config.budget, FractionBudget):
        return limit
    ranks = _scoring_ranks(config)
    cheapest = min(c.cost_per_rank for c in space.sites) * ranks[0]
    if limit < cheapest:
        raise BudgetError(
            f"budget of {limit} parameters is below the cheapest module (rank {ranks[0]} costs {cheapest})",
            field="budget",
        )
    if config.shortcuts and config.shortcut_mode == "separated":
        check_family_budgets(space.sites, space.shortcut_sites, ranks, limit, config)
    return limit


def score_sites(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    config: AllocationConfig,
    progress: Progress,
    space: SearchSpace | None = None,
    group: Group | None = None,
) -> SiteScores:
    """Run the configured proxy over every candidate site (and shortcut site). With a process
    `group`, a shardable proxy scores this rank's share of `batches` and sums over the ranks."""
    spec = get_proxy(config.proxy)
    if spec.needs_data and not batches:
        raise DataError("no scoring batches", field="samples")
    if spec.needs_labels and any("labels" not in b for b in batches):
        raise DataError(f"proxy {config.proxy!r} needs labelled samples", field="samples")
    space = space or discover_space(model, config)
    sites, sc_sites = space.sites, space.shortcut_sites
    ranks = _scoring_ranks(config)
    start = time.perf_counter()
    shard = group if group is not None and spec.shardable else None
    ctx = ProxyContext(
        model=model,
        batches=shard.shard(batches) if shard else batches,
        candidates=sites + sc_sites,
        ranks=ranks,
        seed=config.seed,
        progress=progress,
        reference_weight=reference_weight if sc_sites else None,
        scoring=resolve_scoring(config.scoring, sites + sc_sites, config.scoring_memory_mb),
        memory_cap_bytes=config.scoring_memory_mb << 20,
        checkpointing=config.gradient_checkpointing,
        oversampling=config.sketch_oversampling,
        reduce=shard.sum_ if shard else None,
        total_batches=len(batches),
    )
    # Shortcut sites exist only while scoring, as zero probes (see heterolora/shortcuts/modules.py).
    with warmed_up_head(model, batches, config.head_warmup_steps, config.seed), scoring_probes(model, sc_sites):
        raw = spec.fn(ctx)
        # Gradient init reads the scoring pass's gradients or sketches (no second pass for gradient proxies).
        gradients = scoring_source(ctx, sites) if config.init == "gradient" else None
    scores = [v[-1] if isinstance(v, list) else v for v in raw.values()]
    if not all(math.isfinite(x) for x in scores):
        raise DataError(f"proxy {config.proxy!r} produced non-finite scores on this sample", field="proxy")
    elapsed = time.perf_counter() - start
    return SiteScores(sites, sc_sites, raw, ranks, len(batches), elapsed, ctx.scoring, ctx.passes, gradients)


def choose(scored: SiteScores, config: AllocationConfig, limit: int) -> dict[str, int]:
    """Ranks per candidate name from the scores: the allocation rule (docs/allocation.md)."""
    ranks, candidates = scored.ranks, scored.sites + scored.shortcut_sites
    curves = {n: (list(v) if isinstance(v, list) else scalar_curve(v, ranks)) for n, v in scored.raw.items()}
    if config.normalize != "none":
        groups = {c.name: str(c.layer if config.normalize == "layer" else c.type) for c in candidates}
        curves = normalize(curves, groups)
    if scored.shortcut_sites:
        return choose_ranks(scored.sites, scored.shortcut_sites, curves, ranks, limit, config)
    if isinstance(config.budget, FractionBudget):
        count = max(1, math.floor(config.budget.fraction * len(scored.sites)))
        chosen = select_top({n: c[-1] for n, c in curves.items()}, count, config.seed)
        return {c.name: (ranks[0] if c.name in chosen else 0) for c in scored.sites}
    items = [Item(c.name, c.cost_per_rank, curves[c.name]) for c in scored.sites]
    return allocate_ranks(items, ranks, limit, config.seed)


def scoring_share(progress: Progress) -> Progress:
    """Scoring reports 0..1; in a whole plan it spans 5 % to 95 %."""
    return lambda f, msg: progress(0.05 + 0.9 * f, msg)


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
    limit = check_budget(model, config, space)
    if group is not None:
        check_agreement(group, model, batches, config, model_id, revision)
    computed_here = scored is None
    if scored is None:
        progress(0.0, "scoring")
        scored = score_sites(model, batches, config, scoring_share(progress), space, group)
        if on_scored is not None:
            on_scored(scored)
    progress(0.95, "allocating")
    rank_of = choose(scored, config, limit)
    scores = {n: (v[-1] if isinstance(v, list) else float(v)) for n, v in scored.raw.items()}
    modules = [
        ModuleEntry.from_candidate(c, rank=rank_of[c.name], alpha=_alpha(rank_of[c.name], config), score=scores[c.name])
        for c in scored.sites + scored.shortcut_sites
    ]
    used = sum(m.params for m in modules)
    plan = Plan.build(
        model=model_info(model, model_id, revision, space.num_layers),
        task=config.task,
        proxy=config.proxy,
        seed=config.seed,
        budget=BudgetInfo(
            kind=budget_kind(config.budget),
            request=config.budget.model_dump(),
            limit=used if isinstance(config.budget, FractionBudget) else limit,
            used=used,
        ),
        modules=modules,
        use_rslora=config.use_rslora,
        fan_in_fan_out=any(c.conv1d for c in scored.sites),
        modules_to_save=head_modules(model),
        settings=config.model_dump(exclude={"task", "proxy", "seed", "budget"})
        | {"batches": scored.batches, "scoring_mode": scored.scoring, "scoring_passes": scored.passes}
        | {"weights_dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
        | {"world_size": group.world_size if group is not None else 1},
        labels=labels or None,
        shortcuts=shortcut_section(model, config, len(scored.shortcut_sites)) if scored.shortcut_sites else None,
        timings=_timings(scored, t0, computed_here),
    )
    if config.init == "gradient":  # issue 14: the plan carries its A/B init
        plan = _with_gradient_init(plan, scored, config)
    if group is not None:  # every rank returns rank 0's plan (identical sums give identical plans)
        plan = group.from_main(plan)
    progress(1.0, "done")
    return plan


def _with_gradient_init(plan: Plan, scored: SiteScores, config: AllocationConfig) -> Plan:
    if scored.gradients is None:
        raise ConfigError("these scores were computed without init='gradient'; score again", field="init")
    t0 = time.perf_counter()
    sites = plan_sites(plan)
    artifact = build_init(
        scored.gradients,
        sites,
        variant=config.init_variant,
        seed=config.seed,
        learning_rate=config.learning_rate,
    )
    plan = attach_init(plan, artifact)
    plan.timings = {**plan.timings, "init_s": round(time.perf_counter() - t0, 4)}
    plan.timings["total_s"] = round(plan.timings["total_s"] + plan.timings["init_s"], 4)
    return plan


def _timings(scored: SiteScores, t0: float, computed_here: bool) -> dict[str, float]:
    """Seconds spent on this plan: scoring (0 when reused from a cache) and the whole call, and
    the torch intra-op threads it ran on (heterolora/threads.py)."""
    elapsed = time.perf_counter() - t0
    total = elapsed if computed_here else elapsed + scored.scoring_s
    return {
        "scoring_s": round(scored.scoring_s, 4),
        "total_s": round(total, 4),
        "torch_threads": torch.get_num_threads(),
    }


def _alpha(rank: int, config: AllocationConfig) -> float:
    if config.use_rslora:
        return config.alpha_ratio * 8  # one alpha for all: scaling alpha / sqrt(r)
    return config.alpha_ratio * rank  # alpha / r constant (EVA's convention)
