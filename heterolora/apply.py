"""Apply a plan to a model with PEFT, and check that PEFT did exactly what the plan says."""

from __future__ import annotations

from typing import Any

from torch import nn

from heterolora.errors import PlanError
from heterolora.plans import Plan


def apply_plan(model: nn.Module, plan: Plan, *, train_head: bool | None = None, **overrides: Any) -> Any:
    """Wrap `model` with PEFT LoRA at the planned ranks and return the PeftModel.

    Args:
        train_head: keep the task head trainable (`modules_to_save`). Defaults to the plan's
            choice (True for seq-cls).
        overrides: extra LoraConfig fields, e.g. lora_dropout=0.1.
    """
    from peft import get_peft_model

    missing = [m.name for m in plan.lora_modules if m.rank > 0 and not _has_module(model, m.name)]
    if missing:
        raise PlanError(
            f"plan for {plan.model.id} does not fit this model: {len(missing)} modules missing, e.g. {missing[0]}",
            field="plan",
        )
    if train_head is False:
        overrides.setdefault("modules_to_save", None)
    peft_model = get_peft_model(model, plan.to_lora_config(**overrides))
    verify_applied(peft_model, plan)
    return peft_model


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def applied_ranks(peft_model: Any, adapter: str = "default") -> dict[str, int]:
    """Rank per adapted module, keyed by the base model's module names."""
    prefix = "base_model.model."
    out = {}
    for name, module in peft_model.named_modules():
        r = getattr(module, "r", None)
        if isinstance(r, dict) and adapter in r and hasattr(module, "lora_A"):
            out[name.removeprefix(prefix)] = int(r[adapter])
    return out


def lora_param_count(peft_model: Any) -> int:
    return sum(p.numel() for n, p in peft_model.named_parameters() if "lora_A" in n or "lora_B" in n)


def verify_applied(peft_model: Any, plan: Plan) -> None:
    """Raise PlanError unless every planned rank is in place and nothing else is adapted."""
    want = {m.name: m.rank for m in plan.lora_modules if m.rank > 0}
    got = applied_ranks(peft_model)
    if got != want:
        diff = sorted(set(got.items()) ^ set(want.items()))[:3]
        raise PlanError(f"PEFT applied different ranks than planned, e.g. {diff}", field="plan")
    used = sum(m.params for m in plan.lora_modules)
    count = lora_param_count(peft_model)
    if count != used:
        raise PlanError(f"PEFT created {count} LoRA parameters, the plan says {used}", field="plan")
