"""Toggleable units: every candidate stays allocated at its rank; a unit is switched on or off.

A unit is anything with a name, a kind, a parameter count and an on/off switch. LoRA units wrap one
PEFT LoRA layer; shortcut units (heterolora.shortcuts) plug in through the same protocol.

Switching off skips the unit's delta in the forward pass, so its factors get no gradient (`.grad`
stays None with zero_grad(set_to_none=True), the PyTorch and Trainer default). We deliberately keep
`requires_grad=True` on switched-off factors: the Trainer builds its optimizer only over parameters
that require grad, and DDP registers its buckets once, so a unit frozen at that moment could never
train after being switched back on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import nn
from transformers.pytorch_utils import Conv1D

from heterolora.architectures import site_type
from heterolora.config import TASK_TYPES
from heterolora.errors import ConfigError
from heterolora.plans import ModuleEntry, Plan, build_peft_kwargs
from heterolora.search_space import Candidate, discover, find_layers, head_modules


@runtime_checkable
class Unit(Protocol):
    """What dynamic re-allocation needs from a candidate."""

    candidate: Candidate  # what the proxies score (name, type, layer, d_in, d_out)
    name: str
    kind: str  # "lora" or "shortcut"
    type: str
    layer: int
    rank: int
    alpha: float

    @property
    def params(self) -> int: ...

    @property
    def enabled(self) -> bool: ...

    def enable(self, on: bool) -> None: ...

    def parameters(self) -> list[nn.Parameter]: ...


@dataclass
class CandidateUnit(ABC):
    """What every unit shares: identity from its candidate, size from its parameters."""

    candidate: Candidate  # what the proxies score: base-model name, type, layer, dims

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def type(self) -> str:
        return self.candidate.type

    @property
    def layer(self) -> int:
        return self.candidate.layer

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """The unit's trainable factors."""


@dataclass
class LoraUnit(CandidateUnit):
    """One PEFT LoRA layer (adapter `adapter`) inside a transformer block."""

    module: Any = field(default=None, repr=False)  # peft.tuners.lora.LoraLayer
    adapter: str = "default"
    kind: str = "lora"

    @property
    def rank(self) -> int:
        return int(self.module.r[self.adapter])

    @property
    def alpha(self) -> float:
        return float(self.module.lora_alpha[self.adapter])

    @property
    def enabled(self) -> bool:
        return not self.module.disable_adapters

    def enable(self, on: bool) -> None:
        self.module.enable_adapters(on)
        for p in self.parameters():  # see the module docstring: stay registered with the optimizer
            p.requires_grad_(True)

    def parameters(self) -> list[nn.Parameter]:
        out: list[nn.Parameter] = []
        for layer_name in self.module.adapter_layer_names:  # lora_A, lora_B (+ DoRA magnitude)
            holder = getattr(self.module, layer_name)
            if self.adapter in holder:
                item = holder[self.adapter]
                out.extend(item.parameters() if isinstance(item, nn.Module) else [item])
        return out


def lora_units(peft_model: nn.Module, adapter: str = "default") -> list[LoraUnit]:
    """Every LoRA layer of `adapter` inside the transformer blocks, in layer then module order."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    prefix, blocks = find_layers(base)
    units = []
    for idx, block in enumerate(blocks):
        for rel, mod in block.named_modules():
            if isinstance(mod, LoraLayer) and adapter in mod.lora_A:
                conv = isinstance(mod.get_base_layer(), Conv1D)
                cand = Candidate(
                    f"{prefix}.{idx}.{rel}", site_type(rel) or "other", idx, mod.in_features, mod.out_features, conv
                )
                units.append(LoraUnit(cand, mod, adapter))
    if not units:
        raise ConfigError(f"no LoRA layers of adapter {adapter!r} inside the transformer blocks", field="model")
    return units


def default_units(model: nn.Module) -> list[Unit]:
    """Every LoRA layer, then every switchable shortcut attached by `prepare_model(shortcuts=True)`."""
    from heterolora.dynamic.shortcut_units import shortcut_units

    return [*lora_units(model), *shortcut_units(model)]


def prepare_model(
    model: nn.Module,
    *,
    rank: int = 8,
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
        alpha: lora_alpha (and shortcut alpha); defaults to 2 * rank (16 at rank 8, as the authors).
        task: seq-cls keeps the task head trainable (modules_to_save), causal-lm does not.
        types, layers: restrict the LoRA candidates, as in AllocationConfig.
        plan: allocate every module the plan adapts, at its rank, instead of a uniform rank.
        shortcuts: also attach a switchable shortcut at every shortcut site (modes combined and
            separated), at `shortcut_rank` (default `rank`).
    """
    if plan is not None:
        from heterolora.apply import apply_plan

        if shortcuts and any(m.rank for m in plan.shortcut_modules):
            raise ConfigError("with shortcuts=True, pass a plan without shortcut entries", field="plan")
        peft_model = apply_plan(model, plan, lora_dropout=dropout)
    else:
        peft_model = _wrap_uniform(model, rank, alpha, task, types, layers, dropout)
    if shortcuts:
        from heterolora.dynamic.shortcut_units import attach_all_shortcuts

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
    entries = [
        ModuleEntry(
            name=c.name,
            type=c.type,
            layer=c.layer,
            rank=rank,
            alpha=lora_alpha,
            score=0.0,
            params=rank * c.cost_per_rank,
            d_in=c.d_in,
            d_out=c.d_out,
        )
        for c in sites
    ]
    kwargs = build_peft_kwargs(
        entries,
        use_rslora=False,
        fan_in_fan_out=any(c.conv1d for c in sites),
        modules_to_save=head_modules(model) if task == "seq-cls" else None,
        task_type=TASK_TYPES[task],
    )
    config = LoraConfig(**kwargs.model_dump(exclude_none=True) | {"lora_dropout": dropout})
    return get_peft_model(model, config)
