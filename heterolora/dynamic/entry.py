"""`heterolora.dynamic.attach`: dynamic HeteroLoRA from what `heterolora.plan` takes.

model, callback = heterolora.dynamic.attach("minilm", samples, budget={"trainable_params": 60_000})
Trainer(model=model, ..., callbacks=[callback]).train()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from heterolora.budget import resolve_limit
from heterolora.config import AllocationConfig, FractionBudget, ParamsBudget
from heterolora.dynamic.callback import DynamicCallback
from heterolora.dynamic.config import DEFAULT_RANK, DynamicConfig, FinalSelection
from heterolora.dynamic.controller import DynamicController
from heterolora.dynamic.prepare import prepare_model
from heterolora.errors import ConfigError
from heterolora.loading import LoadedModel, default_device
from heterolora.planner import prepare
from heterolora.search_space import discover


def attach(
    model: str | nn.Module = "minilm",
    samples: Any = None,
    config: AllocationConfig | None = None,
    *,
    tokenizer: Any = None,
    realloc_every: int | float = 0.2,
    rank: int = DEFAULT_RANK,
    final: FinalSelection = "last",
    export_to: str | Path | None = None,
    steps_per_epoch: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> tuple[Any, DynamicCallback]:
    """LoRA at `rank` on every candidate, the best-scored ones active under the budget, re-scored
    every `realloc_every` steps (int) or epoch fraction (float) by a Trainer callback.

    Args:
        model: a model id (as for heterolora.plan), or a loaded transformers model with `tokenizer`.
        samples: the scoring sample (None: the built-in one), scored again at every reallocation.
        config / options: an AllocationConfig or its fields. The budget bounds the *active*
            adapters: {"trainable_params": N} and the default {"like": ...} a parameter count,
            {"fraction": p, "rank": r} the share of modules (at rank r). `shortcuts=True` adds
            switchable shortcuts (`shortcut_mode` combined or separated).
        rank: every candidate's rank under a parameter budget; the default, 4, lets a budget the
            size of uniform r = 2 keep about half the sites on (docs/dynamic.md, "Measured quality").
    Returns:
        the PEFT model to train and its DynamicCallback (`.controller`, `.tokenizer`).
    """
    config = config or AllocationConfig(**options)
    if config.use_rslora and "use_rslora" in config.model_fields_set:
        raise ConfigError("dynamic HeteroLoRA uses alpha/r scaling; use_rslora is not supported", field="use_rslora")
    config = config.model_copy(update={"use_rslora": False})  # rsLoRA is the static plans' default only
    if isinstance(model, str):
        model_id = model
        loaded, batches = prepare(model, samples, config, device=device or default_device(), dtype=dtype)
    elif tokenizer is None:
        raise ConfigError(
            "a loaded model needs its tokenizer: attach(model, samples, tokenizer=...)", field="tokenizer"
        )
    else:
        model_id = getattr(getattr(model, "config", None), "name_or_path", None) or "model"
        loaded, batches = prepare(model_id, samples, config, loaded=LoadedModel(model, tokenizer, model_id, None))
    budget = config.budget
    if isinstance(budget, FractionBudget):
        rank, active = budget.rank, {"active_fraction": budget.fraction}
    elif isinstance(budget, ParamsBudget):
        active = {"active_params": budget.trainable_params}
    else:  # like: as many active parameters as that uniform LoRA would train
        active = {"active_params": resolve_limit(config, discover(loaded.model))}
    dynamic = DynamicConfig(
        proxy=config.proxy,
        realloc_every=realloc_every,
        mode=config.shortcut_mode if config.shortcuts else "lora",
        shortcut_share=config.shortcut_share,
        seed=config.seed,
        final=final,
        **active,
    )
    peft_model = prepare_model(
        loaded.model,
        rank=rank,
        alpha=config.alpha_ratio * rank,
        task=config.task,
        types=config.types,
        layers=config.layers,
        shortcuts=config.shortcuts,
    )
    controller = DynamicController(peft_model, batches, dynamic, steps_per_epoch=steps_per_epoch, model_id=model_id)
    return peft_model, DynamicCallback(controller, export_to=export_to, tokenizer=loaded.tokenizer)
