"""The arms of the quality benchmark: how each one turns a fresh MiniLM into a PeftModel.

Every arm trains the same head (mean pooling + classifier, PEFT `modules_to_save`) and has the
LoRA budget of uniform rank 2 on all six linear types (`BUDGET`), except the q,v default (its own
r=8 count), the paper's fraction mode (25 % of sites at rank 8) and EVA (same rank units).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from heterolora.allocation import Item, allocate_ranks, scalar_curve
from heterolora.config import PROXY_NAMES, AllocationConfig
from heterolora.engine import compute_plan, resolve_limit
from heterolora.search_space import discover, head_modules

ALL_TYPES = ["q", "k", "v", "o", "up", "down"]
BUDGET = {"like": {"r": 2, "types": ALL_TYPES}}  # 82,944 LoRA parameters on MiniLM
ALPHA_RATIO = 2.0  # lora_alpha = 2 r in every arm (the engine's default alpha_ratio)
KINDS = ("baseline", "heterolora", "control", "peer", "shortcut", "dynamic")


@dataclass(frozen=True)
class ArmSpec:
    """An arm name plus AllocationConfig overrides, written `name` or `name:key=value/key=value`
    (list values joined with '+', e.g. `heterolora_rank_energy:rank_set=1+2+4+8`)."""

    name: str
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ArmSpec:
        name, _, rest = text.partition(":")
        pairs = tuple(tuple(p.split("=", 1)) for p in rest.split("/") if p)
        if name not in arm_names() or any(len(p) != 2 for p in pairs):
            raise ValueError(f"unknown arm {text!r}; choose from {arm_names()}")
        return cls(name, pairs)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        extra = "".join(f"__{k}-{v}" for k, v in self.overrides)
        return self.name + extra

    def config_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.overrides:
            out[key] = [int(x) for x in value.split("+")] if key in ("rank_set", "types") else value
        return out


DYNAMIC_RANK = 8  # every candidate allocated at 4 x the baseline's rank 2, a quarter of it active


def arm_names() -> list[str]:
    hetero = [f"heterolora_{p}" for p in PROXY_NAMES]
    later = ["heterolora_shortcuts", "dynamic"]  # (g) and (h)
    return ["uniform_qv_r8", "uniform_all", *hetero, "heterolora_fraction", "random", "eva", *later]


def kind_of(name: str) -> str:
    if name in ("heterolora_shortcuts", "dynamic"):
        return "shortcut" if name == "heterolora_shortcuts" else "dynamic"
    if name.startswith("uniform"):
        return "baseline"
    if name.startswith("heterolora"):
        return "heterolora"
    return "control" if name == "random" else "peer"


def lora_config(ranks: dict[str, int], head: list[str]) -> Any:
    """LoraConfig with exact module names and alpha = ALPHA_RATIO * r per module."""
    from peft import LoraConfig

    used = {n: r for n, r in ranks.items() if r > 0}
    common = max(set(used.values()), key=list(used.values()).count)
    return LoraConfig(
        r=common,
        lora_alpha=ALPHA_RATIO * common,
        target_modules=sorted(used),
        rank_pattern={f"^{n}$": r for n, r in used.items()},
        alpha_pattern={f"^{n}$": ALPHA_RATIO * r for n, r in used.items()},
        modules_to_save=head,
        task_type="SEQ_CLS",
    )


def budget_limit(model: nn.Module) -> int:
    return resolve_limit(AllocationConfig(budget=BUDGET), discover(model))


def uniform_ranks(model: nn.Module, types: list[str], r: int) -> dict[str, int]:
    return {c.name: r for c in discover(model) if c.type in types}


def random_ranks(model: nn.Module, config: AllocationConfig, seed: int) -> dict[str, int]:
    """The allocation rule fed with random scores: heterogeneity without any proxy signal."""
    rng = random.Random(1000 + seed)
    ranks = config.effective_ranks()
    items = [Item(c.name, c.cost_per_rank, scalar_curve(rng.random(), ranks)) for c in discover(model)]
    return allocate_ranks(items, ranks, budget_limit(model), seed)


def build_arm(
    spec: ArmSpec, model: nn.Module, scoring: list[dict[str, torch.Tensor]], seed: int
) -> tuple[Any, float, dict[str, int]]:
    """(PeftModel, planning seconds, rank per site) for one arm on a freshly loaded model."""
    from peft import get_peft_model

    head = head_modules(model)
    options = spec.config_options()
    t0 = time.perf_counter()
    if spec.name == "eva":
        return _eva(model, scoring, head, seed)
    if spec.name == "heterolora_shortcuts":
        return _shortcuts(model, scoring, head, seed, options)
    if spec.name == "dynamic":
        return _dynamic(model, scoring, seed, options)
    if spec.name == "uniform_qv_r8":
        ranks = uniform_ranks(model, ["q", "v"], 8)
    elif spec.name == "uniform_all":
        ranks = uniform_ranks(model, ALL_TYPES, 2)
    elif spec.name == "random":
        ranks = random_ranks(model, AllocationConfig(**options), seed)
    else:
        proxy = options.pop("proxy", None) or spec.name.removeprefix("heterolora_")
        if spec.name == "heterolora_fraction":
            proxy, budget = AllocationConfig().proxy, {"fraction": 0.25, "rank": 8}
        else:
            budget = BUDGET
        config = AllocationConfig(proxy=proxy, budget=budget, seed=seed, **options)
        ranks = compute_plan(model, scoring, config).ranks
    seconds = time.perf_counter() - t0
    torch.manual_seed(10_000 + seed)  # LoRA A init: the same stream in every arm
    return get_peft_model(model, lora_config(ranks, head)), seconds, ranks


def _eva(model: nn.Module, scoring: list[dict[str, torch.Tensor]], head: list[str], seed: int) -> Any:
    """PEFT EVA at the rank units of uniform_all (r=2 on all six types, rho=2 redistributes)."""
    from peft import EvaConfig, LoraConfig, get_peft_model, initialize_lora_eva_weights

    t0 = time.perf_counter()
    names = sorted(uniform_ranks(model, ALL_TYPES, 2))
    config = LoraConfig(
        r=2,
        lora_alpha=2 * ALPHA_RATIO,
        target_modules=names,
        init_lora_weights="eva",
        eva_config=EvaConfig(rho=2.0, use_label_mask=False),
        modules_to_save=head,
        task_type="SEQ_CLS",
    )
    torch.manual_seed(10_000 + seed)
    peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
    inputs = [{k: v for k, v in b.items() if k != "labels"} for b in scoring]
    initialize_lora_eva_weights(peft_model, dataloader=inputs, show_progress_bar=False)
    ranks = {}
    for name, module in peft_model.named_modules():
        r = getattr(module, "r", None)
        if isinstance(r, dict) and "default" in r and hasattr(module, "lora_A"):
            ranks[name.removeprefix("base_model.model.")] = int(r["default"])
    return peft_model, time.perf_counter() - t0, ranks


def _shortcuts(
    model: nn.Module, scoring: list[dict[str, torch.Tensor]], head: list[str], seed: int, options: dict[str, Any]
) -> tuple[Any, float, dict[str, int]]:
    """(g): the engine's default plan over LoRA sites and shortcut connections at the budget."""
    from peft import get_peft_model

    from heterolora.shortcuts import attach_shortcuts

    t0 = time.perf_counter()
    plan = compute_plan(model, scoring, AllocationConfig(budget=BUDGET, seed=seed, shortcuts=True, **options))
    seconds = time.perf_counter() - t0
    lora = {m.name: m.rank for m in plan.lora_modules}
    torch.manual_seed(10_000 + seed)
    peft_model = get_peft_model(model, lora_config(lora, head))
    attach_shortcuts(peft_model.get_base_model(), plan)  # after PEFT, which freezes what it does not own
    return peft_model, seconds, plan.ranks


def _dynamic(
    model: nn.Module, scoring: list[dict[str, torch.Tensor]], seed: int, options: dict[str, Any]
) -> tuple[Any, float, dict[str, int]]:
    """(h): every site at DYNAMIC_RANK, re-scored every 0.2 epoch, at most the budget active at once.
    The training loop finds the controller on the model (`heterolora_dynamic`)."""
    from heterolora.dynamic import DynamicConfig, DynamicController, prepare_model

    t0 = time.perf_counter()
    limit = budget_limit(model)
    torch.manual_seed(10_000 + seed)
    peft_model = prepare_model(model, rank=DYNAMIC_RANK, alpha=ALPHA_RATIO * DYNAMIC_RANK)
    config = DynamicConfig(active_params=limit, active_fraction=None, realloc_every=0.2, seed=seed, **options)
    controller = DynamicController(peft_model, scoring, config)
    object.__setattr__(peft_model, "heterolora_dynamic", controller)
    return peft_model, time.perf_counter() - t0, {u.name: DYNAMIC_RANK for u in controller.units}
