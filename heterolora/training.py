"""The plan's training section: the recipe the plan's evidence was measured with (docs/quality.md),
so a user gets it by default, and `make_optimizer`, which builds it. Import-light: torch and peft
load only in `make_optimizer`.

The optimizer is PEFT's LoRA+ (`peft.optimizers.create_loraplus_optimizer`): AdamW at
`learning_rate` for the A matrices (and the head's weights), `lora_plus_ratio` times that for the
B matrices (and, as PEFT groups them, every 1-D parameter such as biases). Ratio 1 is plain AdamW.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from heterolora.config import MAX_LORA_PLUS_RATIO

if TYPE_CHECKING:
    import torch

    from heterolora.config import AllocationConfig
    from heterolora.plans import Plan

DEFAULT_TRAINING_RATE = 1e-3  # the rate every static family picked on the MRPC hold-out (docs/quality.md)
DEFAULT_WEIGHT_DECAY = 0.01


class TrainingInfo(BaseModel):
    """How to train the plan's adapter: the settings its evidence was measured with. A user who
    overrides them is free to; docs/quality.md says what was measured."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(gt=0, le=1, description="AdamW rate of the A matrices and the head.")
    lora_plus_ratio: float = Field(
        default=1.0, ge=1, le=MAX_LORA_PLUS_RATIO, description="LoRA+: B matrices train at this many times the rate."
    )
    weight_decay: float = Field(default=DEFAULT_WEIGHT_DECAY, ge=0, le=1)
    alpha_mode: Literal["constant_ratio", "rslora"] = Field(
        default="constant_ratio", description="Scaling per module: alpha / r, or rsLoRA alpha / sqrt(r)."
    )
    init: Literal["zero", "gradient"] = "zero"
    init_step: float | None = Field(
        default=None,
        ge=0,
        description="gora init: the step size the gradient step was taken with (0: no step lowered the "
        "scoring loss, so B stays zero); None otherwise.",
    )
    init_step_rule: Literal["line_search", "learning_rate"] | None = Field(
        default=None, description="How init_step was chosen: a line search on a scoring batch, or the rate."
    )
    head_warmup_steps: int = Field(default=0, ge=0, description="Head-only steps before the init's gradient.")

    def summary(self) -> str:
        """One line for the CLI's plan display."""
        text = f"training: lr {self.learning_rate:g}, LoRA+ ratio {self.lora_plus_ratio:g}, alpha {self.alpha_mode}, "
        text += f"init {self.init}"
        if self.init_step is not None:
            text += f" (step {self.init_step:.3g} by {self.init_step_rule})"
        if self.head_warmup_steps:
            text += f", head warm-up {self.head_warmup_steps} steps"
        return text + " (make_optimizer builds it)"


def training_section(config: AllocationConfig, init_step: float | None) -> TrainingInfo:
    """The training section of a plan made with `config` (`init_step`: what the gora init used)."""
    gora = config.init == "gradient" and config.init_variant == "gora"
    return TrainingInfo(
        learning_rate=config.learning_rate or DEFAULT_TRAINING_RATE,
        lora_plus_ratio=config.lora_plus_ratio,
        alpha_mode="rslora" if config.use_rslora else "constant_ratio",
        init=config.init,
        init_step=init_step if gora else None,
        init_step_rule=config.init_step if gora else None,
        head_warmup_steps=config.head_warmup_steps,
    )


def make_optimizer(model: Any, plan: Plan | None = None, **overrides: Any) -> torch.optim.Optimizer:
    """The optimizer the plan's training section describes, for a model `apply_plan` returned
    (`plan` defaults to the one it carries): PEFT's LoRA+ AdamW. `overrides` replace fields of the
    section (learning_rate, lora_plus_ratio, weight_decay). With the HF Trainer:
    `Trainer(..., optimizers=(make_optimizer(model), None))`."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    from heterolora.errors import PlanError
    from heterolora.plans import PLAN_ATTR

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
