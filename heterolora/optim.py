"""`make_optimizer`: the optimizer a plan's training section describes (heterolora/training.py).

PEFT's LoRA+ (`peft.optimizers.create_loraplus_optimizer`): AdamW at `learning_rate` for the A
matrices (and the head's weights), `lora_plus_ratio` times that for the B matrices (and, as PEFT
groups them, every 1-D parameter such as biases). Ratio 1 is plain AdamW.
"""

from __future__ import annotations

from typing import Any

import torch

from heterolora.errors import PlanError
from heterolora.plans import PLAN_ATTR, Plan
from heterolora.training import DEFAULT_TRAINING_RATE, TrainingInfo


def make_optimizer(model: Any, plan: Plan | None = None, **overrides: Any) -> torch.optim.Optimizer:
    """The optimizer the plan's training section describes, for a model `apply_plan` returned
    (`plan` defaults to the one it carries): PEFT's LoRA+ AdamW. `overrides` replace fields of the
    section (learning_rate, lora_plus_ratio, weight_decay). With the HF Trainer:
    `Trainer(..., optimizers=(make_optimizer(model), None))`."""
    from peft.optimizers import create_loraplus_optimizer

    plan = plan if plan is not None else getattr(model, PLAN_ATTR, None)
    if plan is None:
        raise PlanError("make_optimizer needs the plan: pass it, or a model returned by apply_plan")
    base = plan.training or TrainingInfo(learning_rate=plan.recommended_learning_rate or DEFAULT_TRAINING_RATE)
    section = TrainingInfo.model_validate(base.model_dump() | overrides)
    return create_loraplus_optimizer(
        model,
        torch.optim.AdamW,
        lr=section.learning_rate,
        loraplus_lr_ratio=section.lora_plus_ratio,
        loraplus_weight_decay=section.weight_decay,
    )
