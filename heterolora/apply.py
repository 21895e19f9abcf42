"""Apply a plan to a model with PEFT (+ shortcut modules), check the result, save and load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from heterolora.errors import PlanError
from heterolora.init.apply import apply_init, check_learning_rate, correct_base
from heterolora.plans import PLAN_ATTR, Plan
from heterolora.shortcuts import (
    attach_shortcuts,
    check_plan_layout,
    load_shortcut_weights,
    shortcut_parameters,
    shortcut_state_dict,
)

PLAN_FILE = "plan.json"
SHORTCUTS_FILE = "shortcuts.safetensors"


def apply_plan(
    model: nn.Module,
    plan: Plan,
    *,
    train_head: bool | None = None,
    learning_rate: float | None = None,
    **overrides: Any,
) -> Any:
    """Wrap `model` with PEFT LoRA at the planned ranks, attach the planned shortcut modules
    (docs/shortcuts.md), and return the PeftModel. Trainable: LoRA A/B, shortcut A/B, and the head
    when it is trained.

    Args:
        train_head: keep the task head trainable (`modules_to_save`). Defaults to the plan's
            choice (True for seq-cls).
        learning_rate: the rate you will train at; with a gradient init (plan.init) a rate other
            than plan.recommended_learning_rate, or none, gives a LearningRateWarning.
        overrides: extra LoraConfig fields, e.g. lora_dropout=0.1.

    A plan with an `init` section also gets its A/B tensors and, for the lora_ga variant, the base
    correction W -= scaling * B @ A (docs/plan-format.md); every A and B is checked against the file.
    """
    from peft import get_peft_model

    missing = [m.name for m in plan.lora_modules if m.rank > 0 and not _has_module(model, m.name)]
    if missing:
        raise PlanError(
            f"plan for {plan.model.id} does not fit this model: {len(missing)} modules missing, e.g. {missing[0]}",
            field="plan",
        )
    if not any(m.rank > 0 for m in plan.lora_modules):
        raise PlanError("the plan enables no LoRA module; PEFT needs at least one", field="plan")
    check_plan_layout(model, plan)  # before PEFT changes the model in place
    if train_head is False:
        overrides.setdefault("modules_to_save", None)
    peft_model = get_peft_model(model, plan.to_lora_config(**overrides))
    verify_applied(peft_model, plan)
    if plan.init is not None:  # gradient init (heterolora/init/apply.py)
        apply_init(peft_model, plan)
        check_learning_rate(learning_rate, plan, stacklevel=2)
    if train_head is False:  # PEFT adds a SEQ_CLS model's classifier to modules_to_save by itself
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.requires_grad_(False)
    # After PEFT: it freezes every parameter it does not own, and the new ones start trainable.
    attach_shortcuts(peft_model.get_base_model(), plan)
    object.__setattr__(peft_model, PLAN_ATTR, plan)
    return peft_model


def save_adapted(peft_model: Any, directory: str | Path, plan: Plan | None = None) -> Path:
    """Write the LoRA adapter (PEFT format, head included), the shortcut weights and the plan.

    `peft_model.merge_and_unload()` folds LoRA into the base weights; shortcuts have no base matrix
    to fold into, so they stay attached as modules either way.
    """
    from safetensors.torch import save_file

    plan = plan or getattr(peft_model, PLAN_ATTR, None)
    if plan is None:
        raise PlanError("no plan attached to this model; pass plan=", field="plan")
    directory = Path(directory)
    peft_model.save_pretrained(directory)
    save_file(shortcut_state_dict(peft_model.get_base_model()), directory / SHORTCUTS_FILE)
    plan.save(directory / PLAN_FILE)
    return directory


def load_adapted(model: nn.Module, directory: str | Path, *, is_trainable: bool = False) -> Any:
    """Rebuild what `save_adapted` wrote on a fresh copy of the base `model`."""
    from peft import PeftModel
    from safetensors.torch import load, load_file

    directory = Path(directory)
    plan = Plan.load(directory / PLAN_FILE)
    check_plan_layout(model, plan)
    peft_model = PeftModel.from_pretrained(model, directory, is_trainable=is_trainable)
    verify_applied(peft_model, plan)
    if plan.init is not None and plan.init.base_correction and plan.init_data is not None:
        correct_base(peft_model, load(plan.init_data))  # the base the adapter was trained on
    base = peft_model.get_base_model()
    attach_shortcuts(base, plan)
    load_shortcut_weights(base, load_file(directory / SHORTCUTS_FILE))
    for p in shortcut_parameters(base):
        p.requires_grad_(is_trainable)
    object.__setattr__(peft_model, PLAN_ATTR, plan)
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
