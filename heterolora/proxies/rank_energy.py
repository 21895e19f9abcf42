"""RANK-ENERGY (ours): what each extra rank is worth at each site.

G = sum_b dL_b/dW is the accumulated gradient of the base weight. The best rank-r update ΔW (with
||ΔW||_F fixed) lowers the loss, to first order, by ||G_r||_F = sqrt(sum_{k<=r} σ_k²), where σ are
G's singular values. The proxy returns that value for every rank in the rank set: a concave curve
per site, so the allocator can give a site rank 16 where its gradient spectrum is broad and rank 2
where one direction carries almost all of it.
"""

import torch

from heterolora.proxies import register_proxy
from heterolora.proxies.context import ProxyContext, Scores


@register_proxy("rank_energy", needs_labels=True)
def rank_energy(ctx: ProxyContext) -> Scores:
    top = max(ctx.ranks)
    curves = {}
    for name, g in ctx.weight_grads().items():
        sigma = torch.linalg.svdvals(g.double())[:top]  # (min(d_out, d_in),) descending
        energy = torch.cumsum(sigma**2, 0)
        curves[name] = [float(energy[min(r, len(energy)) - 1].sqrt()) for r in ctx.ranks]
    return curves
