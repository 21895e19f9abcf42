"""One call from model id and samples to a Plan: load, tokenise, compute."""

from __future__ import annotations

from typing import Any

import torch

from heterolora.config import AllocationConfig
from heterolora.data import builtin_sample, label_map, make_batches, normalize_samples, num_labels_of
from heterolora.engine import compute_plan
from heterolora.loading import LoadedModel, default_device, load_model
from heterolora.plans import Plan
from heterolora.proxies import get_proxy
from heterolora.proxies.context import Progress


def prepare(
    model_id: str,
    samples: Any,
    config: AllocationConfig,
    *,
    device: str | None = None,
    dtype: str | None = None,
    loaded: LoadedModel | None = None,
) -> tuple[LoadedModel, list[dict[str, torch.Tensor]]]:
    """Validate the sample, load the model (unless given) and build the scoring batches."""
    rows = normalize_samples(samples)
    needs_labels = config.task == "seq-cls" and get_proxy(config.proxy).needs_labels
    labels = label_map(rows, required=needs_labels) if config.task == "seq-cls" else {}
    if loaded is None:
        loaded = load_model(model_id, config.task, num_labels=num_labels_of(labels), dtype=dtype, device=device)
    batches = make_batches(
        rows,
        loaded.tokenizer,
        task=config.task,
        batch_size=config.batch_size,
        num_batches=config.num_batches,
        max_length=_token_limit(loaded, config.max_length),
        seed=config.seed,
        labels=labels,
    )
    return loaded, batches


def _token_limit(loaded: LoadedModel, requested: int) -> int:
    """The requested length, capped by the model's position table (else long inputs crash it)."""
    cfg = loaded.model.config
    positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if positions and getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta"):
        positions -= 2  # these reserve padding_idx + 1 positions
    return min(requested, positions) if positions else requested


def plan(
    model: str = "minilm",
    samples: Any = None,
    config: AllocationConfig | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Plan:
    """Plan LoRA ranks for `model` (hub id, local folder or "minilm") on `samples`.

    Args:
        samples: list of {text, text_pair?, label?}, a DataFrame or a datasets.Dataset;
            None uses the built-in sample of sentence pairs.
        config: an AllocationConfig; or pass its fields as keyword options, e.g.
            budget={"trainable_params": 100_000}, proxy="rank_energy".
    """
    config = config or AllocationConfig(**options)
    device = device or default_device()
    if progress:
        progress(0.0, "loading model")
    loaded, batches = prepare(
        model, builtin_sample() if samples is None else samples, config, device=device, dtype=dtype
    )
    return compute_plan(loaded.model, batches, config, model_id=model, revision=loaded.revision, progress=progress)
