"""The library call: `heterolora.plan(model, samples, budget=..., proxy=...)`."""

from __future__ import annotations

from typing import Any

from heterolora import planner
from heterolora.config import AllocationConfig
from heterolora.plans import Plan
from heterolora.proxies.context import Progress

prepare = planner.prepare  # scoring batches for callers that score themselves


def plan(
    model: str = "minilm",
    samples: Any = None,
    config: AllocationConfig | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Plan:
    """Plan LoRA ranks for `model` (hub id, local folder or "minilm") on `samples`.

    Args:
        samples: list of {text, text_pair?, label?}, a DataFrame or a datasets.Dataset;
            None uses the built-in sample of sentence pairs.
        config: an AllocationConfig; or pass its fields as keyword options, e.g.
            budget={"trainable_params": 100_000}, proxy="rank_energy".
        device, dtype: where and in what the weights are loaded ("cuda:1", "bfloat16"); scoring
            accumulates in float32 whatever the weights' dtype.
        device_map: "auto" spreads a model larger than one GPU over every visible GPU (accelerate).
    """
    config = config or AllocationConfig(**options)
    return planner.plan(model, samples, config, device=device, dtype=dtype, device_map=device_map, progress=progress)
