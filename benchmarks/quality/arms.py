"""The arms of the quality benchmark: how each one turns a freshly loaded MiniLM into a PeftModel.

Every planned arm goes through the product's own path, `heterolora.apply_plan(model, plan)`, on an
engine Plan of this very model, so each arm trains what a user's `apply_plan` trains: the planned
LoRA ranks and the plan's `modules_to_save` head. Uniform and random arms are engine plans with
their ranks replaced (`with_ranks`); the peer arms (EVA, LoRA-GA) use PEFT directly. Budget: uniform
rank 2 on all six linear types (`BUDGET`), except the q,v default (its own r=8 count), the paper's
fraction mode (25 % of sites at rank 8) and EVA (same rank units).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.quality.peers import ALPHA_RATIO, DYNAMIC_RANKS, dynamic_arm, eva_arm, lora_ga_arm
from heterolora.allocation import Item, allocate_ranks, scalar_curve
from heterolora.apply import apply_plan
from heterolora.budget import resolve_limit
from heterolora.config import PROXY_NAMES, AllocationConfig
from heterolora.engine import compute_plan
from heterolora.init.step import init_for_plan
from heterolora.plans import Plan, build_peft_kwargs
from heterolora.scoring import warmed_up_head
from heterolora.search_space import discover

ALL_TYPES = ["q", "k", "v", "o", "up", "down"]
BUDGET = {"like": {"r": 2, "types": ALL_TYPES}}  # 82,944 LoRA parameters on MiniLM
KINDS = ("baseline", "heterolora", "init", "control", "peer", "shortcut", "dynamic")
INIT_OPTIONS = ("init", "init_variant", "learning_rate")  # AllocationConfig's gradient-init fields
INIT_ARMS = ("heterolora_init", "uniform_all_init", "uniform_init")  # plans with init="gradient"
ROUND3_ARMS = ("uniform_all", "heterolora", "heterolora_init", "uniform_all_init", "peft_lora_ga", "dynamic", "random")
ROUND4_ARMS = ("uniform_all", "uniform_recipe", "heterolora", "heterolora_init", "uniform_init")  # arms 1-5
UNIFORM_ARMS = ("uniform_all", "uniform_all_init", "uniform_recipe", "uniform_init")  # r = 2 on all six types
# The round-4 recipe's alpha mode (docs/quality.md, "Round 4 protocol"): rsLoRA, scaling alpha / sqrt(r)
# with one alpha for every module, 2 sqrt(2), so a rank-2 module keeps the constant mode's scale (2).
RSLORA_ARMS = ("uniform_recipe", "heterolora", "heterolora_init", "uniform_init")
RSLORA_ALPHA = ALPHA_RATIO * math.sqrt(2)  # what the engine's rsLoRA gives a `like` r = 2 budget


@dataclass(frozen=True)
class Recipe:
    """How a family trains: the A rate and the LoRA+ ratio (B rate / A rate; 1 = plain AdamW); for
    the init family also the gora step rule and the head warm-up before the gradient."""

    lr: float
    ratio: float = 1.0
    init_step: str = "line_search"
    warmup: int = 0


# Recipe per family (docs/quality.md, "Round 4 protocol"): the round-4 hold-out sweep's pick
# (benchmarks/results/quality-sweep-mrpc.json, sweep_pick) where the family has one, else round 3's rate;
# each pick is written here in a commit before that family's finals. Round 3's picks
# (benchmarks/results/round3/quality-sweep-mrpc.md, 3 seeds each): 1e-3 for the static families and
# lora_ga, 3e-4 for dynamic, 1e-3 for dynamic_wide; eva kept round 2's 3e-3.
FAMILY_RECIPE = {
    "adamw": Recipe(2e-3),  # arm 1, uniform_all (and uniform_qv_r8); round-4 pick, mean 76.12 over seeds 0, 1
    "recipe_uniform": Recipe(5e-4, 4.0),  # arm 2, uniform_recipe; round-4 pick, mean 75.80 (ratio 4 at 1e-3: 75.76)
    "recipe_plan": Recipe(1e-3, 4.0),  # arm 3, heterolora and the other planned arms; round-4 pick, mean 76.53
    # arms 4 and 5 (and round 3's uniform_all_init): recipe_plan's rate and ratio; round-4 pick of the step rule
    # and warm-up, line search without head warm-up, mean 77.06 (LoRA-One without warm-up: 75.88)
    "init": Recipe(1e-3, 4.0, init_step="line_search", warmup=0),
    "lora_ga": Recipe(1e-3),
    "eva": Recipe(3e-3),
    "dynamic": Recipe(3e-4),
    "dynamic_wide": Recipe(1e-3),
}
# Sweep families: how many grid points run seed 1 after seed 0 (the protocol's pruning).
PRUNE_TOP = {"adamw": 2, "recipe_uniform": 3, "recipe_plan": 3, "init": 2}


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


def arm_names() -> list[str]:
    hetero = [f"heterolora_{p}" for p in PROXY_NAMES]
    peers = ["eva", "peft_lora_ga"]
    later = ["heterolora_shortcuts", *DYNAMIC_RANKS]  # (g) and (h) at two ranks
    first = ["uniform_qv_r8", "uniform_all", "uniform_recipe", "heterolora", *hetero, "heterolora_fraction", "random"]
    first += INIT_ARMS
    return [*first, *peers, *later]


def kind_of(name: str) -> str:
    if name in INIT_ARMS:
        return "init"
    if name == "heterolora_shortcuts":
        return "shortcut"
    if name in DYNAMIC_RANKS:
        return "dynamic"
    if name.startswith("uniform"):
        return "baseline"
    if name.startswith("heterolora"):
        return "heterolora"
    return "control" if name == "random" else "peer"


FAMILY_OF_KIND = {"heterolora": "recipe_plan", "control": "recipe_plan", "shortcut": "recipe_plan"}


def family_of(name: str) -> str:
    """The recipe family (FAMILY_RECIPE): arms that differ only in where the ranks go share a recipe;
    each peer and each dynamic arm (its rank changes the step each unit takes) has its own."""
    kind = kind_of(name)
    if kind == "peer":
        return "eva" if name == "eva" else "lora_ga"
    if kind == "dynamic":
        return name
    if kind == "baseline":
        return "recipe_uniform" if name == "uniform_recipe" else "adamw"
    return FAMILY_OF_KIND.get(kind, kind)  # init


def alpha_mode(name: str) -> str:
    return "rslora" if name in RSLORA_ARMS else "constant"


def arm_options(spec: ArmSpec) -> dict[str, Any]:
    """The arm's AllocationConfig overrides, with the init family's step rule and warm-up filled in
    for the round-4 init arms (round 3's uniform_all_init took its step from the rate, no warm-up)."""
    options = spec.config_options()
    if spec.name in INIT_ARMS:
        recipe = FAMILY_RECIPE["init"]
        round3 = spec.name == "uniform_all_init"
        options.setdefault("init_step", "learning_rate" if round3 else recipe.init_step)
        options.setdefault("head_warmup_steps", 0 if round3 else recipe.warmup)
    return options


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


def with_ranks(plan: Plan, ranks: dict[str, int], source: str, rslora: bool = False) -> Plan:
    """`plan` (an engine plan of the same model) with other LoRA ranks, alpha = ALPHA_RATIO r as the
    engine sets it, or with `rslora` one alpha (RSLORA_ALPHA) and scaling alpha / sqrt(r); `source`
    names where the ranks came from (Plan.proxy)."""
    modules = []
    for m in plan.lora_modules:
        r = ranks.get(m.name, 0)
        alpha = (RSLORA_ALPHA if rslora else ALPHA_RATIO * r) if r else 0.0
        modules.append(m.model_copy(update={"rank": r, "alpha": alpha, "params": r * (m.d_in + m.d_out)}))
    peft = build_peft_kwargs(
        modules,
        use_rslora=rslora,
        fan_in_fan_out=plan.peft.fan_in_fan_out,
        modules_to_save=plan.peft.modules_to_save,
        task_type=plan.peft.task_type,
    )
    used = sum(m.params for m in modules)
    budget = plan.budget.model_copy(update={"used": used})
    mode = "rslora" if rslora else "constant_ratio"
    return plan.model_copy(
        update={"modules": modules, "peft": peft, "proxy": source, "budget": budget, "alpha_mode": mode}
    )


def template_plan(model: nn.Module, seed: int, **options: Any) -> Plan:
    """An engine plan of `model` with no data (the constant proxy): the frame `with_ranks` fills."""
    return compute_plan(model, [], AllocationConfig(proxy="constant", budget=BUDGET, seed=seed, **options))


def arm_plan(
    spec: ArmSpec, model: nn.Module, scoring: list[dict[str, torch.Tensor]], seed: int, lr: float | None = None
) -> Plan:
    """The Plan an arm applies: the engine's plan for planned arms, engine-framed ranks for the others.
    `lr` is the rate the arm trains at: a gradient init is built for it (its step size depends on it)."""
    options = arm_options(spec)
    name = spec.name
    rslora = name in RSLORA_ARMS
    if name in INIT_ARMS:  # the plan carries the init; apply_plan initialises from it (gradient-init issue)
        options["init"] = "gradient"
        if lr is not None:
            options.setdefault("learning_rate", lr)
    if name == "uniform_qv_r8":
        return with_ranks(template_plan(model, seed), uniform_ranks(model, ["q", "v"], 8), "uniform")
    if name in UNIFORM_ARMS:
        init = {k: options.pop(k) for k in INIT_OPTIONS if k in options}
        frame = template_plan(model, seed, **options)
        plan = with_ranks(frame, uniform_ranks(model, ALL_TYPES, 2), "uniform", rslora)
        if name in INIT_ARMS:  # the init of these ranks, from the arm's scoring batches
            init.pop("init")
            kwargs = {k.removeprefix("init_"): v for k, v in init.items()}
            warmup = int(options.get("head_warmup_steps", 0))  # as compute_plan does before its gradient
            with warmed_up_head(model, scoring, warmup, seed):
                plan = init_for_plan(model, scoring, plan, **kwargs, init_step=options["init_step"])
        return plan
    if name == "random":
        return with_ranks(template_plan(model, seed), random_ranks(model, AllocationConfig(**options), seed), "random")
    budget: dict[str, Any] = BUDGET
    if name == "heterolora_fraction":
        budget = {"fraction": 0.25, "rank": 8}
    elif name.removeprefix("heterolora_") in PROXY_NAMES:  # `heterolora` and `heterolora_init`: the default
        options.setdefault("proxy", name.removeprefix("heterolora_"))
    if name == "heterolora_shortcuts":
        options["shortcuts"] = True
    # the product's rsLoRA (one alpha, 2 sqrt(2) at this budget: RSLORA_ALPHA) for the round-4 recipe arms;
    # alpha/r for the others, as they ran in earlier rounds, whatever the product's default
    options.setdefault("use_rslora", rslora)
    return compute_plan(model, scoring, AllocationConfig(budget=budget, seed=seed, **options))


def build_arm(
    spec: ArmSpec, model: nn.Module, scoring: list[dict[str, torch.Tensor]], seed: int, lr: float | None = None
) -> tuple[Any, float, dict[str, int]]:
    """(PeftModel, planning seconds, rank per site) for one arm on a freshly loaded model that will
    train at `lr`."""
    if spec.name == "eva":
        return eva_arm(model, scoring, seed)
    if spec.name == "peft_lora_ga":
        return lora_ga_arm(arm_plan(ArmSpec("uniform_all"), model, scoring, seed), model, scoring, seed)
    if spec.name in DYNAMIC_RANKS:
        return dynamic_arm(model, scoring, seed, budget_limit(model), spec.config_options(), DYNAMIC_RANKS[spec.name])
    t0 = time.perf_counter()
    plan = arm_plan(spec, model, scoring, seed, lr)
    seconds = time.perf_counter() - t0
    torch.manual_seed(10_000 + seed)  # LoRA A init: the same stream in every arm
    return apply_plan(model, plan, learning_rate=lr), seconds, plan.ranks
