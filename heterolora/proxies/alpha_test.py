"""ALPHA-TEST: how far can a site's output be scaled down before the loss degrades?

For each site, binary-search the smallest a in {0, 1, ..., 10} such that scaling the site's whole
output by a/10 keeps the mean loss within (1 + tol) of the unscaled loss; score = a/10 (higher =
more important). A small tie-break term adds the relative loss increase at a = 0.

Differences from the authors: the loss replaces accuracy (smooth, no tie plateaus on small
samples), scoring runs in eval mode, and at most `MAX_BATCHES` batches are used because the search
costs about five forward passes per site.
"""

import math

import torch

from heterolora.proxies.context import ProxyContext, Scores, batch_loss
from heterolora.proxies.registry import register_proxy

TOLERANCE = 0.01
MAX_BATCHES = 8


@register_proxy("alpha_test", needs_labels=True)
def alpha_test(ctx: ProxyContext) -> Scores:
    model = ctx.model
    batches = [ctx.to_device(b) for b in ctx.batches[:MAX_BATCHES]]
    scale = {"value": 1.0}

    def mean_loss() -> float:
        return sum(float(batch_loss(model, b)) for b in batches) / len(batches)

    was_training = model.training
    model.eval()
    scores = {}
    try:
        with torch.no_grad():
            base = mean_loss()
            limit = base * (1 + TOLERANCE) if base > 0 else base + TOLERANCE
            for i, c in enumerate(ctx.candidates):
                module = model.get_submodule(c.name)
                hook = module.register_forward_hook(lambda m, args, out: out * scale["value"])
                try:
                    scale["value"] = 0.0
                    at_zero = mean_loss()
                    lo, hi = 0, 10
                    if at_zero <= limit:
                        hi = 0
                    while lo < hi:
                        mid = (lo + hi) // 2
                        scale["value"] = mid / 10
                        if mean_loss() <= limit:
                            hi = mid
                        else:
                            lo = mid + 1
                finally:
                    hook.remove()
                    scale["value"] = 1.0
                rise = max(0.0, at_zero - base) / max(abs(base), 1e-8)
                scores[c.name] = hi / 10 + 0.01 * math.tanh(rise)
                ctx.progress((i + 1) / len(ctx.candidates), f"scoring {i + 1}/{len(ctx.candidates)}")
    finally:
        model.train(was_training)
    return scores
