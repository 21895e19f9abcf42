"""The plan's training section: the recipe the plan's evidence was measured with (docs/quality.md),
so a user gets it by default; `heterolora.optim.make_optimizer` builds it. Import-light (pydantic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from heterolora.config import MAX_LORA_PLUS_RATIO

if TYPE_CHECKING:
    from heterolora.config import AllocationConfig

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
    init_step_rule: Literal["line_search", "lora_one", "learning_rate"] | None = Field(
        default=None,
        description="How the gora step was chosen: a line search on a scoring batch, LoRA-One's per-site "
        "normalisation (init_step is then null), or the rate.",
    )
    head_warmup_steps: int = Field(default=0, ge=0, description="Head-only steps before the init's gradient.")

    def summary(self) -> str:
        """One line for the CLI's plan display."""
        text = f"training: lr {self.learning_rate:g}, LoRA+ ratio {self.lora_plus_ratio:g}, alpha {self.alpha_mode}, "
        text += f"init {self.init}"
        if self.init_step_rule is not None:
            step = f"step {self.init_step:.3g} by " if self.init_step is not None else "step by "
            text += f" ({step}{self.init_step_rule})"
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
