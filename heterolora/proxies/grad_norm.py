"""GRAD-NORM on the base weight: s = ||sum_b dL_b/dW||_F.

The authors take ||G_A|| + ||G_B|| of the LoRA factors. Under standard init (B = 0) G_A = 0 and
G_B = s * G_W A^T, a random projection of G_W, so scoring G_W itself keeps the signal and drops
the projection noise.

Streamed scoring cannot hold G, so it returns the unbiased sketch estimate of ||G||_F²
(square-rooted; see SketchedSite.frobenius): one pass, relative sd of the square at most
sqrt(2 / (k + l)), about 7 % at the default rank set, less for gradients with a broad spectrum.
"""

from heterolora.proxies.context import ProxyContext, Scores
from heterolora.proxies.registry import register_proxy


@register_proxy("grad_norm", needs_labels=True, shardable=True)
def grad_norm(ctx: ProxyContext) -> Scores:
    if ctx.scoring == "stream":
        return {name: site.frobenius() for name, site in ctx.sketches().sites.items()}
    return {name: float(g.norm()) for name, g in ctx.weight_grads().items()}
