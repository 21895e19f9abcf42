"""CONSTANT: every site scores 1. The allocation then depends only on each site's cost."""

from heterolora.proxies.context import ProxyContext, Scores
from heterolora.proxies.registry import register_proxy


@register_proxy("constant", needs_labels=False, needs_data=False)
def constant(ctx: ProxyContext) -> Scores:
    return {c.name: 1.0 for c in ctx.candidates}
