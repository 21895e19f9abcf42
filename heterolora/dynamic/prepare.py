"""Wrap a model for dynamic HeteroLoRA: LoRA on every candidate (and optionally a switchable
shortcut at every shortcut site), and list its units."""

from __future__ import annotations

from typing import Any

from torch import nn

from heterolora.apply import apply_plan
from heterolora.config import TASK_TYPES
from heterolora.dynamic.config import DEFAULT_RANK
from heterolora.dynamic.shortcut_units import attach_all_shortcuts, shortcut_units
from heterolora.dynamic.units import Unit, lora_units
from heterolora.errors import ConfigError
from heterolora.plans import ModuleEntry, Plan, build_peft_kwargs
from heterolora.search_space import discover, head_modules


def default_units(model: nn.Module) -> list[Unit]:
    """Every LoRA layer, then every switchable shortcut attached by `prepare_model(shortcuts=True)`."""
    return [*lora_units(model), *shortcut_units(model)]


def prepare_model(
    model: nn.Module,
    *,
    rank: int = DEFAULT_RANK,
    alpha: float | None = None,
    task: str = "seq-cls",
    types: list[str] | None = None,
    layers: list[int] | None = None,
    plan: Plan | None = None,
    dropout: float = 0.0,
    shortcuts: bool = False,
    shortcut_rank: int | None = None,
) -> Any:
    """Wrap `model` with LoRA on every candidate (all at `rank`, or at a plan's ranks).

    Args:
        alpha: lora_alpha (and shortcut alpha); defaults to 2 * rank (the authors: 16 at rank 8).
        task: seq-cls keeps the task head trainable (modules_to_save), causal-lm does not.
        types, layers: restrict the LoRA candidates, as in AllocationConfig.
        plan: allocate every module the plan adapts, at its rank, instead of a uniform rank.
        shortcuts: also attach a switchable shortcut at every shortcut site (modes combined and
            separated), at `shortcut_rank` (default `rank`).
    """
    if plan is not None:
        if shortcuts and any(m.rank for m in plan.shortcut_modules):
            raise ConfigError("with shortcuts=True, pass a plan without shortcut entries", field="plan")
        peft_model = apply_plan(model, plan, lora_dropout=dropout)
    else:
        peft_model = _wrap_uniform(model, rank, alpha, task, types, layers, dropout)
    if shortcuts:
        r = shortcut_rank or rank
        # After PEFT, which freezes every parameter it does not own; new shortcut factors train.
        attach_all_shortcuts(peft_model.get_base_model(), r, float(alpha if alpha is not None else 2 * r))
    return peft_model


def _wrap_uniform(
    model: nn.Module,
    rank: int,
    alpha: float | None,
    task: str,
    types: list[str] | None,
    layers: list[int] | None,
    dropout: float,
) -> Any:
    if task not in TASK_TYPES:
        raise ConfigError(f"task {task!r}: choose from {sorted(TASK_TYPES)}", field="task")
    from peft import LoraConfig, get_peft_model

    sites = discover(model, types, layers)
    lora_alpha = float(alpha if alpha is not None else 2 * rank)
    entries = [ModuleEntry.from_candidate(c, rank=rank, alpha=lora_alpha) for c in sites]
    kwargs = build_peft_kwargs(
        entries,
        use_rslora=False,
        fan_in_fan_out=any(c.conv1d for c in sites),
        modules_to_save=head_modules(model) if task == "seq-cls" else None,
        task_type=TASK_TYPES[task],
    )
    config = LoraConfig(**kwargs.model_dump(exclude_none=True) | {"lora_dropout": dropout})
    return get_peft_model(model, config)
