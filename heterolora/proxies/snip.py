"""SNIP on the base weight: s = sum_ij |W ⊙ sum_b dL_b/dW|_ij.

The authors apply SNIP to the LoRA factors, where B = 0 makes it exactly zero everywhere. The base
weight's connection sensitivity is the quantity SNIP was designed for.

|W ⊙ G| needs G element by element, so streamed scoring stays exact and holds G for one group of
sites at a time (ctx.grad_groups): one pass over the K batches per group.
"""

from heterolora.proxies.context import ProxyContext, Scores
from heterolora.proxies.registry import register_proxy


@register_proxy("snip", needs_labels=True, shardable=True)
def snip(ctx: ProxyContext) -> Scores:
    by_name = {c.name: c for c in ctx.candidates}
    scores = {}
    for group in ctx.grad_groups():
        for name, g in group.items():
            scores[name] = float((ctx.weight(by_name[name]).detach().float() * g).abs().sum())
    return {c.name: scores[c.name] for c in ctx.candidates}
