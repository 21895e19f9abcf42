"""A plan applied by PEFT gives exactly the planned ranks and parameter count, per architecture."""

from __future__ import annotations

import math

import pytest
from conftest import ARCHS, random_batches, tiny_model
from peft import LoraConfig, get_peft_model

from heterolora.apply import applied_ranks, apply_plan, lora_param_count
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.errors import BudgetError, PlanError

CASES = [(a, "seq-cls") for a in ARCHS] + [(a, "causal-lm") for a in ("opt", "llama", "gpt2")]


def _plan(arch: str, task: str, **cfg):
    model = tiny_model(arch, task)
    batches = random_batches(labels=None if task == "causal-lm" else 2)
    config = AllocationConfig(task=task, **({"budget": {"trainable_params": 3000}} | cfg))
    return model, compute_plan(model, batches, config, model_id=f"tiny-{arch}")


@pytest.mark.parametrize(("arch", "task"), CASES)
def test_peft_applies_exact_ranks_and_count(arch: str, task: str) -> None:
    model, plan = _plan(arch, task, rank_set=[2, 4, 8, 16])
    ranks = {m.name: m.rank for m in plan.lora_modules}
    assert len(set(ranks.values()) - {0}) >= 1 and 0 < plan.budget.used <= 3000
    assert plan.budget.used >= 0.95 * 3000
    peft_model = get_peft_model(model, plan.to_lora_config())
    got = applied_ranks(peft_model)
    assert got == {n: r for n, r in ranks.items() if r > 0}  # planned rank everywhere, none on rank 0
    assert lora_param_count(peft_model) == plan.budget.used
    alphas = {m.alpha for m in plan.lora_modules if m.rank}
    assert plan.peft.use_rslora and len(alphas) == 1  # the default: rsLoRA, one alpha
    for name, r in got.items():  # PEFT scales each module as the plan says: alpha / sqrt(r)
        layer = peft_model.base_model.model.get_submodule(name)
        assert layer.scaling["default"] == pytest.approx(next(iter(alphas)) / math.sqrt(r)), (name, r)


def test_constant_alpha_mode_scales_every_module_by_alpha_ratio() -> None:
    model, plan = _plan("bert", "seq-cls", rank_set=[2, 4, 8, 16], use_rslora=False)
    assert plan.alpha_mode == "constant_ratio" and not plan.peft.use_rslora
    peft_model = get_peft_model(model, plan.to_lora_config())
    got = applied_ranks(peft_model)
    assert len(set(got.values())) > 1
    for name, r in got.items():  # alpha/r constant: every module scales by alpha_ratio
        layer = peft_model.base_model.model.get_submodule(name)
        assert layer.scaling["default"] == pytest.approx(2.0), (name, r)


def test_apply_plan_verifies_and_rejects_a_foreign_plan() -> None:
    model, plan = _plan("llama", "seq-cls")
    peft_model = apply_plan(model, plan)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or ".score." in n for n in trainable)
    with pytest.raises(PlanError, match="does not fit this model"):
        apply_plan(tiny_model("bert"), plan)


def test_like_budget_equals_uniform_lora_count() -> None:
    _, plan = _plan("bert", "seq-cls", budget={"like": {"r": 8, "types": ["q", "v"]}})
    uniform = get_peft_model(tiny_model("bert"), LoraConfig(r=8, target_modules=["query", "value"]))
    assert plan.budget.limit == lora_param_count(uniform) == 2 * 2 * 8 * 64
    # GPT-2 has fused attention: "q, v" means its c_attn.
    _, gpt = _plan("gpt2", "seq-cls", budget={"like": {"r": 8, "types": ["q", "v"]}})
    assert gpt.budget.limit == 2 * 8 * (32 + 96)


def test_fraction_mode_is_the_papers_top_k_at_one_rank() -> None:
    _, plan = _plan("opt", "seq-cls", budget={"fraction": 0.25, "rank": 8})
    on = [m for m in plan.lora_modules if m.rank]
    assert len(on) == 3  # floor(0.25 * 12 candidates)
    assert {m.rank for m in on} == {8} and plan.budget.used == plan.budget.limit == sum(m.params for m in on)


def test_rslora_keeps_one_alpha() -> None:
    """One alpha for every module: a module at the reference rank gets the constant mode's scale."""
    _, plan = _plan("bert", "seq-cls", use_rslora=True)
    assert plan.alpha_mode == "rslora" and plan.peft.use_rslora
    lora = [m for m in plan.lora_modules if m.rank]
    mean_rank = sum(m.params for m in lora) / sum(m.d_in + m.d_out for m in lora)  # per parameter
    assert plan.peft.alpha_pattern and all(
        a == pytest.approx(2.0 * math.sqrt(mean_rank)) for a in plan.peft.alpha_pattern.values()
    )
    _, like = _plan("bert", "seq-cls", use_rslora=True, budget={"like": {"r": 2}})
    assert all(a == pytest.approx(2.0 * math.sqrt(2)) for a in like.peft.alpha_pattern.values())  # 2 at rank 2


def test_max_rank_caps_every_rank() -> None:
    _, plan = _plan("bert", "seq-cls", max_rank=4)
    assert plan.max_rank <= 4


@pytest.mark.parametrize(
    ("budget", "message"),
    [({"trainable_params": 10}, "below the cheapest module"), ({"trainable_params": 10**9}, "not below the model")],
)
def test_impossible_budgets(budget: dict, message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        _plan("bert", "seq-cls", budget=budget)
