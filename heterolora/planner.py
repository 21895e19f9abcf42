"""The front door, `heterolora.plan`: model id and samples in, Plan out. The CLI, the service's
embedded queue and the Celery task (through service/jobs/run.py) all call `plan`.

    samples -> checked rows + label classes (once)
            -> model (through an optional ModelCache)
            -> scoring batches
            -> engine.compute_plan: discover sites once, check the budget, score (or reuse cached
               scores), allocate, assemble the Plan
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from heterolora import distributed
from heterolora.caches import ModelCache, cache_key
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.errors import ConfigError, HeteroLoraError
from heterolora.loading import LoadedModel, default_device, load_model
from heterolora.plans import Plan
from heterolora.proxies.context import Progress
from heterolora.samples import checked_samples, num_labels_of, scoring_batches
from heterolora.scoring import score_key

LOADING_SHARE = 0.1  # progress share of model loading; the engine reports the rest


def _quiet(fraction: float, phase: str) -> None:
    return None


def plan(
    model: str = "minilm",
    samples: Any = None,
    config: AllocationConfig | None = None,
    *,
    cache: ModelCache | None = None,
    progress: Progress | None = None,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    **options: Any,
) -> Plan:
    """Plan LoRA ranks for `model` (hub id, local folder or "minilm") on `samples`.

    Args:
        samples: list of {text, text_pair?, label?}, a DataFrame or a datasets.Dataset;
            None uses the built-in sample of sentence pairs.
        config: an AllocationConfig; or pass its fields as keyword options, e.g.
            budget={"trainable_params": 100_000}, proxy="rank_energy".
        cache: keeps loaded models (and their scores) between calls; none by default.
        progress: called with (fraction 0..1, phase); it may raise to stop the plan (the service
            cancels jobs that way).
        device, dtype: where and in what the weights are loaded ("cuda:1", "bfloat16"); scoring
            accumulates in float32 whatever the weights' dtype.
        device_map: "auto" spreads a model larger than one GPU over every visible GPU (accelerate).

    Under a launcher (`torchrun`: WORLD_SIZE > 1) the processes plan together, each on its share
    of the batches, and every rank returns rank 0's plan (heterolora/distributed.py).
    """
    config = config or AllocationConfig(**options)
    report = progress or _quiet
    device = distributed.rank_device(device) or default_device()
    group = distributed.from_env(device)
    if group is not None and device_map:
        raise ConfigError("device_map cannot be combined with several processes: one GPU per rank", field="device_map")
    cache = cache if cache is not None else ModelCache(size=0)  # size 0 keeps nothing
    rows, classes = checked_samples(samples, config)
    report(0.0, "loading model")
    key = cache_key(model, config.task, num_labels_of(classes), dtype, device, device_map)
    place = {"dtype": dtype, "device": device, "device_map": device_map}
    loaded = cache.load(key, lambda: load_model(model, config.task, num_labels=key[2], **place))
    try:
        batches = scoring_batches(rows, classes, loaded.tokenizer, config, loaded.token_limit(config.max_length))
        # Same model, revision, sample and scoring options: reuse the scores, only allocate again.
        score_id = hashlib.sha256(json.dumps([loaded.revision, rows, score_key(config)]).encode()).hexdigest()
        return compute_plan(
            loaded.model,
            batches,
            config,
            model_id=model,
            revision=loaded.revision,
            progress=lambda f, phase: report(LOADING_SHARE + (1 - LOADING_SHARE) * f, phase),
            scored=cache.scores(key, score_id) if group is None else None,  # ranks must all score
            on_scored=lambda scored: cache.put_scores(key, score_id, scored),
            labels=classes,
            group=group,
        )
    except HeteroLoraError:
        raise  # rejected input: raised before the model was touched
    except BaseException:
        cache.discard(key)  # an interrupted run may leave the model half-restored
        raise


def prepare(
    model_id: str,
    samples: Any,
    config: AllocationConfig,
    *,
    device: str | None = None,
    dtype: str | None = None,
    loaded: LoadedModel | None = None,
) -> tuple[LoadedModel, list[dict[str, torch.Tensor]]]:
    """The loaded model (unless given) and the scoring batches, for callers that score themselves
    (benchmarks, the dynamic variant)."""
    rows, classes = checked_samples(samples, config)
    if loaded is None:
        loaded = load_model(model_id, config.task, num_labels=num_labels_of(classes), dtype=dtype, device=device)
    return loaded, scoring_batches(rows, classes, loaded.tokenizer, config, loaded.token_limit(config.max_length))
