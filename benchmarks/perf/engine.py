"""Engine sections of the performance benchmark: proxy overhead over the physical limit (K plain
forward+backward passes), PEFT's EVA on the same data and rank budget, and scaling in K and depth."""

from __future__ import annotations

from typing import Any

from torch import nn

from benchmarks.perf.report import GRADIENT_PROXIES
from benchmarks.perf.timing import interleave, loglog_slope, median, rounded, timed
from benchmarks.perf.workloads import Batches, Spec, Workload, llama_model, random_batches
from heterolora.config import AllocationConfig, LikeBudget, UniformSpec
from heterolora.engine import compute_plan
from heterolora.proxies.context import batch_loss
from heterolora.search_space import discover

TIMED_PROXIES = ("constant", *GRADIENT_PROXIES, "synflow")


def plan_fn(w: Workload, config: AllocationConfig) -> Any:
    """One timed plan: build (tokenise) the batches, then compute_plan; the model is already loaded."""
    return lambda: compute_plan(w.model, w.build(config), config)


def plain_passes(model: nn.Module, batches: Batches, into: list[float]) -> None:
    """The physical limit: one forward+backward per batch, every parameter trainable (as loaded),
    .grad cleared between batches like a training step. Appends one time per batch."""
    for batch in batches:
        into.append(timed(lambda b=batch: batch_loss(model, b).backward()))
        model.zero_grad(set_to_none=True)


def proxy_overhead(w: Workload, rounds: int) -> dict[str, Any]:
    """Planning time ÷ (K × median plain pass), per proxy, interleaved with the plain passes."""
    batches = w.build(w.spec.config())
    k = len(batches)
    per_batch: list[float] = []
    variants = {"plain": lambda: plain_passes(w.model, batches, per_batch)}
    variants |= {p: plan_fn(w, w.spec.config(proxy=p)) for p in TIMED_PROXIES}
    times = interleave(variants, rounds)
    limit = k * median(per_batch)
    ratios = {p: rounded(median(times[p]) / limit) for p in TIMED_PROXIES}
    return {
        "ratios": ratios,
        "k": k,
        "plain_pass_ms": rounded(1000 * median(per_batch), 1),
        "limit_s": rounded(limit),
        "plan_s": {p: rounded(median(times[p])) for p in TIMED_PROXIES},
        "rounds": rounds,
    }


def alpha_test_overhead(w: Workload, limit_s: float) -> dict[str, Any]:
    """ALPHA-TEST is forward-only but searches each site (~5 x 8 forward passes per site), so it is
    timed once, on the last layer's sites only, to keep the run short."""
    last = max(c.layer for c in discover(w.model))
    config = w.spec.config(proxy="alpha_test", layers=[last])
    seconds = timed(plan_fn(w, config))
    sites = len(discover(w.model, None, [last]))
    return {"ratio": rounded(seconds / limit_s), "plan_s": rounded(seconds), "sites": sites}


def eva_ratio(w: Workload, rounds: int) -> dict[str, Any]:
    """Our planning time ÷ PEFT's get_eva_state_dict, same model, batches and rank budget
    (uniform r = 8 on every candidate site: EVA redistributes that many ranks, we that many parameters)."""
    from peft import LoraConfig
    from peft.tuners.lora.config import EvaConfig
    from peft.tuners.lora.eva import get_eva_state_dict

    sites = discover(w.model)
    types = sorted({c.type for c in sites})
    ours = w.spec.config(budget=LikeBudget(like=UniformSpec(r=8, types=types)))
    peft_config = LoraConfig(
        r=8, target_modules=[c.name for c in sites], init_lora_weights="eva", eva_config=EvaConfig(rho=2.0, tau=0.99)
    )
    forwards = {"n": 0}

    def forward(model: nn.Module, inputs: dict) -> Any:
        forwards["n"] += 1
        return model(**inputs)

    def eva() -> None:
        unlabelled = [{k: v for k, v in b.items() if k != "labels"} for b in w.build(ours)]  # EVA is label-free
        get_eva_state_dict(w.model, unlabelled, peft_config, forward_fn=forward, show_progress_bar=False)

    times = interleave({"ours": plan_fn(w, ours), "eva": eva}, rounds)
    return {
        "ratio": rounded(median(times["ours"]) / median(times["eva"])),
        "ours_s": rounded(median(times["ours"])),
        "eva_s": rounded(median(times["eva"])),
        "eva_forward_passes": forwards["n"] // rounds,
        "k": ours.num_batches,
        "rank_budget": f"r=8 on {len(sites)} sites ({'+'.join(types)})",
        "rounds": rounds,
    }


def scaling_k(spec: Spec, ks: list[int], rounds: int) -> dict[str, Any]:
    """Planning time as K grows, on one LLaMA (batches pre-built: this is the compute's exponent)."""
    model = llama_model(spec.layers, spec.hidden)
    pool = random_batches(max(ks), spec.batch_size, spec.seq_len)
    variants = {k: _plan_on(model, pool[:k], spec.config(num_batches=k)) for k in ks}
    times = interleave({str(k): fn for k, fn in variants.items()}, rounds)
    seconds = [median(times[str(k)]) for k in ks]
    return _fit("k", ks, seconds, rounds, f"LLaMA {spec.layers} layers, hidden {spec.hidden}")


def scaling_depth(spec: Spec, depths: list[int], rounds: int) -> dict[str, Any]:
    """Planning time as depth grows, K fixed, same width."""
    batches = random_batches(spec.num_batches, spec.batch_size, spec.seq_len)
    models = {d: llama_model(d, spec.hidden) for d in depths}
    variants = {str(d): _plan_on(models[d], batches, spec.config()) for d in depths}
    times = interleave(variants, rounds)
    seconds = [median(times[str(d)]) for d in depths]
    return _fit("layers", depths, seconds, rounds, f"LLaMA hidden {spec.hidden}, K = {spec.num_batches}")


def _plan_on(model: nn.Module, batches: Batches, config: AllocationConfig) -> Any:
    return lambda: compute_plan(model, batches, config)


def _fit(axis: str, xs: list[int], seconds: list[float], rounds: int, model: str) -> dict[str, Any]:
    return {
        "exponent": rounded(loglog_slope([float(x) for x in xs], seconds)),
        axis: xs,
        "plan_s": [rounded(s) for s in seconds],
        "model": model,
        "rounds": rounds,
    }
