"""Discover the candidate LoRA sites of a loaded transformers model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from heterolora.architectures import ARCHITECTURES, site_type
from heterolora.errors import ConfigError, UnsupportedModelError
from heterolora.plans import ModelInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One adaptable linear site. A rank-r LoRA here trains r * (d_in + d_out) parameters."""

    name: str  # full name in model.named_modules()
    type: str  # canonical type (q, k, v, o, qkv, gate, up, down)
    layer: int
    d_in: int
    d_out: int
    conv1d: bool = False  # GPT-2 style Conv1D: weight is (d_in, d_out), PEFT needs fan_in_fan_out

    @property
    def cost_per_rank(self) -> int:
        return self.d_in + self.d_out


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | Conv1D)


def _dims(module: nn.Module) -> tuple[int, int, bool]:
    if isinstance(module, Conv1D):
        d_in, d_out = module.weight.shape  # Conv1D stores (in, out)
        return int(d_in), int(d_out), True
    return int(module.in_features), int(module.out_features), False


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of transformer layers: the architecture's known path, else the longest
    ModuleList whose blocks contain linear layers."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    spec = ARCHITECTURES.get(model_type)
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if spec is not None:
        for name, mod in lists:
            if name == spec.layers_suffix or name.endswith("." + spec.layers_suffix):
                return name, mod
    else:
        log.warning("model_type %r is not in the tested table; using generic layer discovery", model_type)
    with_linears = [(n, m) for n, m in lists if any(_is_linear(x) for x in m[0].modules()) and n.count(".") < 4]
    if not with_linears:
        raise UnsupportedModelError(
            f"no transformer layers found in {type(model).__name__}: expected an nn.ModuleList of blocks "
            "containing nn.Linear or Conv1D modules",
            field="model_id",
        )
    return max(with_linears, key=lambda nm: len(nm[1]))


def discover(model: nn.Module, types: list[str] | None = None, layers: list[int] | None = None) -> list[Candidate]:
    """All candidate sites, in layer order then module order, filtered by type and layer."""
    found, num_layers = walk_sites(model)
    return select_sites(found, types, layers, num_layers=num_layers)


def walk_sites(model: nn.Module) -> tuple[list[Candidate], int]:
    """Every adaptable linear site of the model's transformer layers (one walk over the modules),
    and the number of layers."""
    prefix, blocks = find_layers(model)
    found: list[Candidate] = []
    for idx, block in enumerate(blocks):
        for rel, mod in block.named_modules():
            if rel and _is_linear(mod) and (kind := site_type(rel)) is not None:
                d_in, d_out, conv = _dims(mod)
                found.append(Candidate(f"{prefix}.{idx}.{rel}", kind, idx, d_in, d_out, conv))
    if not found:
        raise UnsupportedModelError(
            f"found {len(blocks)} layers at '{prefix}' but no linear site with a known name "
            "(q/k/v/o, qkv, gate/up/down); pass a supported architecture",
            field="model_id",
        )
    return found, len(blocks)


def select_sites(
    found: list[Candidate], types: list[str] | None, layers: list[int] | None, *, num_layers: int
) -> list[Candidate]:
    """The sites of `found` with a type in `types` and a layer in `layers` (None: all)."""
    present = {c.type for c in found}
    if types is not None:
        missing = sorted(set(types) - present)
        if missing:
            raise ConfigError(f"types {missing} do not exist in this model; it has {sorted(present)}", field="types")
        found = [c for c in found if c.type in types]
    if layers is not None:
        bad = sorted(i for i in layers if not 0 <= i < num_layers)
        if bad:
            raise ConfigError(f"layers {bad} out of range 0..{num_layers - 1}", field="layers")
        found = [c for c in found if c.layer in layers]
    return found


def model_info(
    model: nn.Module, model_id: str, revision: str | None = None, num_layers: int | None = None
) -> ModelInfo:
    """The plan's description of a model (`num_layers`, when known, saves a walk over its modules)."""
    return ModelInfo(
        id=model_id,
        revision=revision,
        architecture=type(model).__name__,
        model_type=getattr(model.config, "model_type", "unknown"),
        num_layers=num_layers if num_layers is not None else len(find_layers(model)[1]),
        hidden_size=getattr(model.config, "hidden_size", None),
    )


def head_modules(model: nn.Module) -> list[str]:
    """Names of the task head (trained as modules_to_save): classifier/score, and a BERT pooler (none
    when the model pools as its checkpoint declares, heterolora.heads)."""
    prefix = getattr(model, "base_model_prefix", "")
    names = [
        n for n, m in model.named_children() if n != prefix and n != "lm_head" and any(True for _ in m.parameters())
    ]
    backbone = getattr(model, prefix, None)
    if isinstance(backbone, nn.Module) and getattr(backbone, "pooler", None) is not None:
        names.append(f"{prefix}.pooler")
    return names


def weight_of(model: nn.Module, cand: Candidate) -> torch.Tensor:
    """Base weight as (d_out, d_in), whatever the module's storage layout."""
    w = model.get_submodule(cand.name).weight
    return w.t() if cand.conv1d else w
