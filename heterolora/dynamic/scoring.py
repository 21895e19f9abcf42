"""Score every unit with a proxy from the engine's registry, on the fixed scoring set, in eval mode.

LoRA units are scored on their *base weight* (the engine's ProxyContext, given the model inside the
PEFT wrapper, where a LoRA layer's `.weight` is its base layer's weight). Scoring the LoRA factors
instead, as the authors do, breaks at the very first reallocation: B = 0 there, so SNIP and SynFlow
are zero for every unit and GRAD-NORM reduces to ||G_B||, a random projection of G_W. The base
weight's gradient is measured *through* the current adapters, so scores still follow training.

Every unit is switched on while scoring (the authors' step 1): each score is then measured in the
same model, not in whichever subset happened to be active.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from heterolora.errors import ConfigError, ProxyError
from heterolora.proxies import get_proxy
from heterolora.proxies.context import ProxyContext

Batches = list[dict[str, torch.Tensor]]
# A scorer scores the units of one kind: (model, units, batches, proxy name, seed) -> score per name.
Scorer = Callable[[nn.Module, list, Batches, str, int], dict[str, float]]


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a PeftModel (names without the `base_model.model.` prefix)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def at_rank(value: float | list[float], ranks: list[int], rank: int) -> float:
    """A scalar score, or a value curve (one value per rank in `ranks`) read at the unit's rank."""
    return float(value[ranks.index(rank)]) if isinstance(value, list) else float(value)


def score_lora(model: nn.Module, units: list, batches: Batches, proxy: str, seed: int) -> dict[str, float]:
    ranks = sorted({u.rank for u in units})
    ctx = ProxyContext(
        model=inner_model(model), batches=batches, candidates=[u.candidate for u in units], ranks=ranks, seed=seed
    )
    raw = get_proxy(proxy).fn(ctx)
    return {u.name: at_rank(raw[u.name], ranks, u.rank) for u in units}


SCORERS: dict[str, Scorer] = {"lora": score_lora}


def score_units(model: nn.Module, units: Sequence, batches: Batches, proxy: str, seed: int) -> dict[str, float]:
    """One score per unit; leaves every unit switched on and the model in its previous mode."""
    kinds = sorted({u.kind for u in units})
    missing = [k for k in kinds if k not in SCORERS]
    if missing:
        raise ConfigError(f"no scorer for unit kinds {missing}; known: {sorted(SCORERS)}", field="mode")
    was_training = model.training
    model.eval()  # no dropout: the same scoring set must give the same scores for the same weights
    try:
        for u in units:
            u.enable(True)
        scores: dict[str, float] = {}
        for kind in kinds:
            scores.update(SCORERS[kind](model, [u for u in units if u.kind == kind], batches, proxy, seed))
    finally:
        model.train(was_training)
    bad = sorted(n for n, s in scores.items() if not math.isfinite(s))
    if bad:
        raise ProxyError(f"proxy {proxy!r} gave non-finite scores, e.g. for {bad[0]}", field="proxy")
    return scores
