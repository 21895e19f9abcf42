"""Toggleable units: every candidate stays allocated at its rank; a unit is switched on or off.
(heterolora.dynamic.prepare wraps a model so that it has them.)

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
from heterolora.errors import ConfigError
from heterolora.search_space import Candidate, find_layers


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
