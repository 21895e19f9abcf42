"""The gora init's step size, chosen from data (GoRA's adaptive selection, docs/plan-format.md).

The gora init is one gradient step ΔW = -η sqrt(d_in / r) Ḡ P_A per site; its B is linear in η, so
B is built once at η = 1 and scaled. Candidates η = 0.8^k (k = 0, 1, ...) down to 1e-5; for each, one
forward loss on a scoring batch with every site's base weight moved by η ΔW(1); the η with the lowest
loss is kept if that loss is below the loss with no step, else η = 0 (B = 0, the standard init).
Forward passes only, in eval mode (no dropout): deterministic for given batches and seed.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from heterolora.init.build import (
    GradientSource,
    InitArtifact,
    InitSite,
    attach_init,
    build_init,
    gradient_pass,
    plan_sites,
)
from heterolora.init.format import DEFAULT_INIT_VARIANT, DEFAULT_LEARNING_RATE, InitVariant, adapter_key, sha256_hex
from heterolora.plans import Plan
from heterolora.proxies.context import batch_loss
from heterolora.search_space import discover

SMALLEST_STEP = 1e-5
STEP_FACTOR = 0.8
LORA_ONE_GAMMA = 128  # LoRA-One's stable gamma (its code's default)


def candidate_steps() -> list[float]:
    """1, 0.8, 0.64, ... while ≥ SMALLEST_STEP (52 candidates)."""
    count = math.floor(math.log(SMALLEST_STEP) / math.log(STEP_FACTOR)) + 1
    return [STEP_FACTOR**k for k in range(count)]


@torch.no_grad()
def line_search(model: nn.Module, batch: dict[str, torch.Tensor], unit: InitArtifact, sites: list[InitSite]) -> float:
    """The η of the lowest loss on `batch` below the no-step loss, else 0. `unit`: the init at η = 1."""
    from safetensors.torch import load

    tensors = load(unit.data)
    cands = {c.name: c for c in discover(model)}
    deltas = []
    for site in sites:
        a, b = tensors[adapter_key(site.name, "A")], tensors[adapter_key(site.name, "B")]
        weight = model.get_submodule(site.name).weight
        delta = site.scaling * (b @ a)  # (d_out, d_in) at η = 1
        delta = (delta.t() if cands[site.name].conv1d else delta).to(weight.device, weight.dtype)
        if hasattr(weight, "device_mesh"):  # an FSDP2 shard (DTensor): the delta sharded alike
            from torch.distributed.tensor import distribute_tensor

            delta = distribute_tensor(delta, weight.device_mesh, weight.placements)
        deltas.append((weight, delta))
    device = next(model.parameters()).device
    return search(model, {k: v.to(device) for k, v in batch.items()}, deltas)


@torch.no_grad()
def search(model: nn.Module, batch: dict[str, torch.Tensor], deltas: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Move each weight by step * its delta for every candidate step; the lowest loss below the
    no-step loss wins, else 0. The weights are restored."""
    saved = [w.detach().clone() for w, _ in deltas]
    was_training = model.training
    model.eval()
    try:
        best_step, best_loss = 0.0, float(batch_loss(model, batch))
        for step in candidate_steps():
            for (weight, delta), base in zip(deltas, saved, strict=True):
                weight.copy_(base + step * delta)
            loss = float(batch_loss(model, batch))
            if math.isfinite(loss) and loss < best_loss:
                best_step, best_loss = step, loss
    finally:
        for (weight, _), base in zip(deltas, saved, strict=True):
            weight.copy_(base)
        model.train(was_training)
    return best_step


def lora_one_steps(unit: InitArtifact, sites: list[InitSite]) -> dict[str, float]:
    """LoRA-One's normalisation, per site: the step that makes the first update's spectral norm
    ||scaling · B @ A||₂ = scaling / LORA_ONE_GAMMA (alpha / (gamma sqrt(r)) under rsLoRA), whatever
    the gradient's magnitude."""
    from safetensors.torch import load

    tensors = load(unit.data)
    steps = {}
    for site in sites:
        b, a = tensors[adapter_key(site.name, "B")].double(), tensors[adapter_key(site.name, "A")].double()
        norm = float(torch.linalg.matrix_norm(b @ a, ord=2))
        steps[site.name] = 1 / (LORA_ONE_GAMMA * norm) if norm > 0 else 0.0
    return steps


def scaled(unit: InitArtifact, step: float | dict[str, float], learning_rate: float) -> InitArtifact:
    """The init at step `step` (B scaled; A unchanged; a dict: one step per site), for training at
    `learning_rate`."""
    from safetensors.torch import load, save

    def factor(key: str) -> float:
        if isinstance(step, float | int):
            return float(step)
        return step[key.removeprefix("base_model.model.").split(".lora_B.")[0]]

    tensors = {k: (v * factor(k) if ".lora_B." in k else v) for k, v in load(unit.data).items()}
    data = save(tensors, metadata={"format": "pt"})
    info = unit.info.model_copy(
        update={"recommended_learning_rate": learning_rate, "sha256": sha256_hex(data), "size": len(data)}
    )
    return InitArtifact(info, data)


def chosen_step_init(
    model: nn.Module,
    source: GradientSource,
    sites: list[InitSite],
    batch: dict[str, torch.Tensor],
    *,
    seed: int,
    learning_rate: float,
    rule: str = "line_search",
) -> tuple[InitArtifact | None, float | None]:
    """(the gora init at the chosen step, the step). `line_search`: (None, 0.0) when no step lowers
    the loss; `lora_one`: one step per site (LoRA-One's normalisation), the step returned is None."""
    unit = build_init(source, sites, variant="gora", seed=seed, learning_rate=1.0)
    if rule == "lora_one":
        return scaled(unit, lora_one_steps(unit, sites), learning_rate), None
    step = line_search(model, batch, unit, sites)
    return (scaled(unit, step, learning_rate) if step > 0 else None), step


def init_for_plan(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    plan: Plan,
    *,
    variant: InitVariant = DEFAULT_INIT_VARIANT,
    learning_rate: float | None = None,
    seed: int | None = None,
    init_step: str = "learning_rate",
) -> Plan:
    """`plan` with a gradient init added, from one gradient pass over `batches`; `init_step`
    "line_search" chooses the gora step on the last batch (see chosen_step_init)."""
    t0 = time.perf_counter()
    seed = plan.seed if seed is None else seed
    sites = plan_sites(plan)
    rate = learning_rate or DEFAULT_LEARNING_RATE[variant]
    source = gradient_pass(model, batches, sites, seed)
    if variant == "gora" and init_step in ("line_search", "lora_one"):
        artifact, step = chosen_step_init(
            model, source, sites, batches[-1], seed=seed, learning_rate=rate, rule=init_step
        )
    else:
        artifact = build_init(source, sites, variant=variant, seed=seed, learning_rate=rate)
        step, init_step = (rate, "learning_rate") if variant == "gora" else (None, None)  # type: ignore[assignment]
    out = attach_init(plan, artifact) if artifact is not None else plan.model_copy()
    if plan.training is not None:
        update = {"init": "gradient", "init_step": step, "init_step_rule": init_step, "learning_rate": rate}
        out.training = plan.training.model_copy(update=update)
    out.timings = {**plan.timings, "init_s": round(time.perf_counter() - t0, 4)}
    return out
