"""Scoring, the costly phase: run the configured proxy over every site of the search space
(the proxies live in heterolora/proxies/, the low-memory stream mode in heterolora/sketch.py) and
keep what allocation and the gradient init need from the pass."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from heterolora.config import AllocationConfig
from heterolora.distributed import Group, fully_sharded
from heterolora.errors import ConfigError, DataError
from heterolora.init.build import GradientSource, scoring_source
from heterolora.proxies import get_proxy
from heterolora.proxies.context import Progress, ProxyContext, batch_loss
from heterolora.search_space import Candidate, head_modules
from heterolora.shortcuts import reference_weight, scoring_probes
from heterolora.sites import SearchSpace
from heterolora.sketch import resolve_scoring


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
    return json.dumps([config.model_dump(include=fields), config.scoring_ranks()], sort_keys=True)


def score_sites(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    config: AllocationConfig,
    progress: Progress,
    space: SearchSpace,
    group: Group | None = None,
) -> SiteScores:
    """Run the configured proxy over every candidate site (and shortcut site). With a process
    `group`, a shardable proxy scores this rank's share of `batches` and sums over the ranks."""
    spec = get_proxy(config.proxy)
    if spec.needs_data and not batches:
        raise DataError("no scoring batches", field="samples")
    if spec.needs_labels and any("labels" not in b for b in batches):
        raise DataError(f"proxy {config.proxy!r} needs labelled samples", field="samples")
    sites, sc_sites = space.sites, space.shortcut_sites
    ranks = config.scoring_ranks()
    mode = resolve_scoring(config.scoring, sites + sc_sites, config.scoring_memory_mb)
    if mode == "exact" and fully_sharded(model):  # FSDP: weight.grad is a shard, X and δ are whole
        if config.scoring == "exact":
            raise ConfigError("scoring='exact' reads weight.grad, which FSDP shards: use 'stream'", field="scoring")
        mode = "stream"
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
        scoring=mode,
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


def scoring_share(progress: Progress) -> Progress:
    """Scoring reports 0..1; in a whole plan it spans 5 % to 95 %."""
    return lambda f, msg: progress(0.05 + 0.9 * f, msg)
