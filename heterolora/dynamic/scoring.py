"""Score every unit with a proxy from the engine's registry, on the fixed scoring set, in eval mode.

LoRA units are scored on their *base weight* (the engine's ProxyContext, given the model inside the
PEFT wrapper, where a LoRA layer's `.weight` is its base layer's weight). Scoring the LoRA factors
instead, as the authors do, breaks at the very first reallocation: B = 0 there, so SNIP and SynFlow
are zero for every unit and GRAD-NORM reduces to ||G_B||, a random projection of G_W. The base
weight's gradient is measured *through* the current adapters, so scores still follow training.

Shortcut units are scored like static shortcuts (heterolora.shortcuts): a zero full-rank probe at
the site, whose gradient is taken through the shortcut's current low-rank term, against the
identity reference. Both kinds share one gradient pass.

Every unit is switched on while scoring (the authors' step 1): each score is then measured in the
same model, not in whichever subset happened to be active.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from heterolora.errors import ConfigError, ProxyError
from heterolora.proxies import get_proxy
from heterolora.proxies.context import ProxyContext

Batches = list[dict[str, torch.Tensor]]


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a PeftModel (names without the `base_model.model.` prefix)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def at_rank(value: float | list[float], ranks: list[int], rank: int) -> float:
    """A scalar score, or a value curve (one value per rank in `ranks`) read at the unit's rank."""
    return float(value[ranks.index(rank)]) if isinstance(value, list) else float(value)


@contextmanager
def _scoring_sites(model: nn.Module, units: Sequence) -> Iterator[Any]:
    """Yield the reference-weight function for the proxies, with shortcut probes in place if any."""
    shortcut = [u for u in units if u.kind == "shortcut"]
    if not shortcut:
        yield None
        return
    from heterolora.dynamic.shortcut_units import live_probes
    from heterolora.shortcuts import reference_weight

    with live_probes(model, shortcut):
        yield reference_weight


def score_units(model: nn.Module, units: Sequence, batches: Batches, proxy: str, seed: int) -> dict[str, float]:
    """One score per unit; leaves every unit switched on and the model in its previous mode."""
    unknown = sorted({u.kind for u in units} - {"lora", "shortcut"})
    if unknown:
        raise ConfigError(f"cannot score unit kinds {unknown}", field="units")
    ranks = sorted({u.rank for u in units})
    inner = inner_model(model)
    was_training = model.training
    model.eval()  # no dropout: the same scoring set must give the same scores for the same weights
    try:
        for u in units:
            u.enable(True)
        with _scoring_sites(inner, units) as reference:
            ctx = ProxyContext(
                model=inner,
                batches=batches,
                candidates=[u.candidate for u in units],
                ranks=ranks,
                seed=seed,
                reference_weight=reference,
            )
            raw = get_proxy(proxy).fn(ctx)
    finally:
        model.train(was_training)
    scores = {u.name: at_rank(raw[u.name], ranks, u.rank) for u in units}
    bad = sorted(n for n, v in scores.items() if not math.isfinite(v))
    if bad:
        raise ProxyError(f"proxy {proxy!r} gave non-finite scores, e.g. for {bad[0]}", field="proxy")
    return scores
