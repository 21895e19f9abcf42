"""The proxy registry: name -> ProxySpec. Proxy modules register themselves on import (see
heterolora/proxies/__init__.py, which imports them all)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from heterolora.errors import ProxyError
from heterolora.proxies.context import ProxyContext, Scores


@dataclass(frozen=True)
class ProxySpec:
    name: str
    fn: Callable[[ProxyContext], Scores]
    needs_labels: bool  # for seq-cls: does it need labelled examples?
    needs_data: bool = True
    # reads the batches only through ctx's gradient statistics (weight_grads, sketches,
    # grad_groups), so ranks may score shards and sum them (heterolora/distributed.py)
    shardable: bool = False


PROXIES: dict[str, ProxySpec] = {}


def register_proxy(name: str, *, needs_labels: bool, needs_data: bool = True, shardable: bool = False):
    def wrap(fn: Callable[[ProxyContext], Scores]) -> Callable[[ProxyContext], Scores]:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"proxy name {name!r} must be snake_case")
        if name in PROXIES:
            raise ValueError(f"proxy {name!r} is already registered")
        if fn.__name__ != name:
            raise ValueError(f"proxy function {fn.__name__!r} must be named like its key {name!r}")
        PROXIES[name] = ProxySpec(name, fn, needs_labels, needs_data, shardable)
        return fn

    return wrap


def get_proxy(name: str) -> ProxySpec:
    try:
        return PROXIES[name]
    except KeyError:
        raise ProxyError(f"unknown proxy {name!r}; choose from {sorted(PROXIES)}", field="proxy") from None
