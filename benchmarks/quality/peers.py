"""Arms that do not go through `apply_plan`: the PEFT peers (EVA, LoRA-GA), applied with PEFT
directly as their users would, and dynamic HeteroLoRA (h), applied with `heterolora.dynamic`."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from heterolora.apply import applied_ranks
from heterolora.plans import Plan
from heterolora.search_space import discover, head_modules

ALPHA_RATIO = 2.0  # lora_alpha = 2 r in every arm (the engine's default alpha_ratio)
# Rank every candidate is allocated at, per dynamic arm. dynamic (h): the authors' 8, 4 x the
# baseline's rank 2, so the budget holds about a quarter of the sites; dynamic_wide: 4, about half.
DYNAMIC_RANKS = {"dynamic": 8, "dynamic_wide": 4}
Batches = list[dict[str, torch.Tensor]]


def _on_device(model: nn.Module, batches: Batches) -> Batches:
    device = next(model.parameters()).device
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


def eva_arm(model: nn.Module, scoring: Batches, seed: int) -> tuple[Any, float, dict[str, int]]:
    """PEFT EVA at the rank units of uniform_all (r=2 on all six types, rho=2 redistributes), on the
    scoring examples without labels (`use_label_mask=False`: sequence labels are not token labels)."""
    from peft import EvaConfig, LoraConfig, get_peft_model, initialize_lora_eva_weights

    t0 = time.perf_counter()
    names = sorted(c.name for c in discover(model) if c.type in ("q", "k", "v", "o", "up", "down"))
    config = LoraConfig(
        r=2,
        lora_alpha=2 * ALPHA_RATIO,
        target_modules=names,
        init_lora_weights="eva",
        eva_config=EvaConfig(rho=2.0, use_label_mask=False),
        modules_to_save=head_modules(model),
        task_type="SEQ_CLS",
    )
    torch.manual_seed(10_000 + seed)
    peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
    inputs = [{k: v for k, v in b.items() if k != "labels"} for b in _on_device(model, scoring)]
    initialize_lora_eva_weights(peft_model, dataloader=inputs, show_progress_bar=False)
    return peft_model, time.perf_counter() - t0, applied_ranks(peft_model)


def lora_ga_arm(uniform: Plan, model: nn.Module, scoring: Batches, seed: int) -> tuple[Any, float, dict[str, int]]:
    """PEFT's LoRA-GA (`init_lora_weights="lora_ga"`, default LoraGAConfig) at the uniform plan's
    ranks and head: gradients of the target weights over the same scoring batches as the proxies
    (`preprocess_loraga`), then `get_peft_model` initialises A and B from their SVD."""
    from peft import LoraGAConfig, get_peft_model, preprocess_loraga

    t0 = time.perf_counter()
    config = uniform.to_lora_config(init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig())
    batches = _on_device(model, scoring)

    def train_step() -> None:
        for batch in batches:
            model(**batch).loss.backward()

    torch.manual_seed(10_000 + seed)  # dropout during the gradient estimate
    preprocess_loraga(model, config, train_step)
    peft_model = get_peft_model(model, config)
    return peft_model, time.perf_counter() - t0, applied_ranks(peft_model)


def dynamic_arm(
    model: nn.Module, scoring: Batches, seed: int, limit: int, options: dict[str, Any], rank: int
) -> tuple[Any, float, dict[str, int]]:
    """(h): every site at `rank`, re-scored every 0.2 epoch, at most `limit` LoRA parameters active
    at once. The training loop finds the controller on the model (`heterolora_dynamic`)."""
    from heterolora.dynamic import DynamicConfig, DynamicController, prepare_model

    t0 = time.perf_counter()
    torch.manual_seed(10_000 + seed)
    peft_model = prepare_model(model, rank=rank, alpha=ALPHA_RATIO * rank)
    config = DynamicConfig(active_params=limit, active_fraction=None, realloc_every=0.2, seed=seed, **options)
    controller = DynamicController(peft_model, scoring, config)
    object.__setattr__(peft_model, "heterolora_dynamic", controller)
    return peft_model, time.perf_counter() - t0, {u.name: rank for u in controller.units}
