"""SNIP on the base weight: s = sum_ij |W ⊙ sum_b dL_b/dW|_ij.

The authors apply SNIP to the LoRA factors, where B = 0 makes it exactly zero everywhere. The base
weight's connection sensitivity is the quantity SNIP was designed for.
"""

from heterolora.proxies.context import ProxyContext, Scores
from heterolora.proxies.registry import register_proxy


@register_proxy("snip", needs_labels=True)
def snip(ctx: ProxyContext) -> Scores:
    grads = ctx.weight_grads()
    return {c.name: float((ctx.weight(c).detach().float() * grads[c.name]).abs().sum()) for c in ctx.candidates}
