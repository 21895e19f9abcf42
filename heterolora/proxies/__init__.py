"""Registry of zero-cost proxies: small functions, one per file, found by name.

@register_proxy("grad_norm", needs_labels=True)
def grad_norm(ctx: ProxyContext) -> Scores: ...
"""

from __future__ import annotations

# Registration happens by import, in one visible place.
from heterolora.proxies import (
    alpha_test,
    constant,
    grad_norm,
    rank_energy,
    snip,
    synflow,
)
from heterolora.proxies.context import ProxyContext, Scores
from heterolora.proxies.registry import PROXIES, ProxySpec, get_proxy, register_proxy

__all__ = [
    "PROXIES",
    "ProxyContext",
    "ProxySpec",
    "Scores",
    "alpha_test",
    "constant",
    "get_proxy",
    "grad_norm",
    "rank_energy",
    "register_proxy",
    "snip",
    "synflow",
]
