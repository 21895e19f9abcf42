"""RANK-ENERGY (ours): what each extra rank is worth at each site.

G = sum_b dL_b/dW is the accumulated gradient of the base weight. The best rank-r update ΔW (with
||ΔW||_F fixed) lowers the loss, to first order, by ||G_r||_F = sqrt(sum_{k<=r} σ_k²), where σ are
G's singular values. The proxy returns that value for every rank in the rank set: a concave curve
per site, so the allocator can give a site rank 16 where its gradient spectrum is broad and rank 2
where one direction carries almost all of it.

Exact scoring takes σ from the dense G; streamed scoring from a low-rank sketch of G
(heterolora/sketch.py), which needs only the top max(rank set) singular values.
"""

import torch

from heterolora.proxies.context import ProxyContext, Scores
from heterolora.proxies.registry import register_proxy
from heterolora.sketch import DenseSite


@register_proxy("rank_energy", needs_labels=True, shardable=True)
def rank_energy(ctx: ProxyContext) -> Scores:
    top = max(ctx.ranks)
    if ctx.scoring == "stream":
        squares = {n: site.squared_singular_values(top) for n, site in ctx.sketches().sites.items()}
    else:
        squares = {n: DenseSite.of(g).squared_singular_values(top) for n, g in ctx.weight_grads().items()}
    return {name: energy_curve(sq, ctx.ranks) for name, sq in squares.items()}


def energy_curve(squares: torch.Tensor, ranks: list[int]) -> list[float]:
    """sqrt of the cumulative σ² at each rank (a rank above the site's size takes all of it)."""
    energy = torch.cumsum(squares, 0)
    at = [min(r, len(energy)) - 1 for r in ranks]
    return energy[at].sqrt().tolist()  # one device sync per site
