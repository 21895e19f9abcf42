"""Gradient init on the real embedded MiniLM, for a uniform-rank arm, and against PEFT's lora_ga."""

from __future__ import annotations

import copy

import torch
from conftest import random_batches, tiny_model
from peft import LoraConfig, LoraGAConfig, get_peft_model
from safetensors.torch import load

from heterolora.apply import apply_plan
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.init.apply import apply_init_artifact
from heterolora.init.build import init_for_ranks
from heterolora.init.format import adapter_key
from heterolora.proxies.context import ProxyContext
from heterolora.search_space import discover


def _logits(model, batches) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return [model(**{k: v for k, v in b.items() if k != "labels"}).logits for b in batches]


def test_minilm_plan_with_gradient_init_keeps_the_function(minilm) -> None:
    loaded, batches = minilm
    config = AllocationConfig(num_batches=4, init="gradient", init_variant="lora_ga", learning_rate=5e-4)
    plan = compute_plan(loaded.model, batches, config, model_id="minilm")
    assert plan.init.recommended_learning_rate == 5e-4 and plan.init.num_batches == len(batches)
    again = compute_plan(loaded.model, batches, config, model_id="minilm")
    assert again.init_data == plan.init_data  # byte-identical
    model = copy.deepcopy(loaded.model)
    before = _logits(model, batches[:2])
    peft_model = apply_plan(model, plan, learning_rate=5e-4)
    tensors = load(plan.init_data)
    base = peft_model.get_base_model()
    for name in plan.ranks:
        layer = base.get_submodule(name)
        assert torch.equal(layer.lora_A["default"].weight, tensors[adapter_key(name, "A")])
        assert torch.equal(layer.lora_B["default"].weight, tensors[adapter_key(name, "B")])
    for x, y in zip(before, _logits(peft_model, batches[:2]), strict=True):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_uniform_ranks_init_matches_peft_lora_ga_up_to_signs() -> None:
    """Same mean gradient, same ranks: our lora_ga variant equals PEFT's init_lora_weights="lora_ga"
    (ArB2r, stable, gamma 16) up to the sign of each singular pair, and both keep the function."""
    batches = random_batches()
    model = tiny_model("llama")
    ranks = {c.name: 8 for c in discover(model) if c.type in ("q", "v", "down")}
    artifact = init_for_ranks(model, batches, ranks, alpha_ratio=2.0, variant="lora_ga")
    assert artifact.info.modules == len(ranks)

    ours = get_peft_model(tiny_model("llama"), LoraConfig(r=8, lora_alpha=16, target_modules=sorted(ranks)))
    apply_init_artifact(ours, artifact.info, artifact.data)
    cands = [c for c in discover(model) if c.name in ranks]
    grads = ProxyContext(tiny_model("llama"), batches, cands, [8]).weight_grads()
    theirs_base = tiny_model("llama")
    for name in ranks:  # what peft.preprocess_loraga attaches: the mean gradient, W's layout
        theirs_base.get_submodule(name)._peft_loraga_grad = grads[name] / len(batches)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=sorted(ranks),
        init_lora_weights="lora_ga",
        lora_ga_config=LoraGAConfig(),
    )
    theirs = get_peft_model(theirs_base, config)
    for name in ranks:
        a = ours.get_base_model().get_submodule(name)
        b = theirs.get_base_model().get_submodule(name)
        a_ours, a_theirs = a.lora_A["default"].weight, b.lora_A["default"].weight
        sign = torch.sign((a_ours * a_theirs).sum(dim=1))
        torch.testing.assert_close(a_ours, a_theirs * sign[:, None], atol=1e-4, rtol=1e-3)
        b_ours, b_theirs = a.lora_B["default"].weight, b.lora_B["default"].weight
        sign = torch.sign((b_ours * b_theirs).sum(dim=0))
        torch.testing.assert_close(b_ours, b_theirs * sign, atol=1e-6, rtol=1e-3)
    reference = _logits(tiny_model("llama"), batches)
    for got in (_logits(ours, batches), _logits(theirs, batches)):
        for x, y in zip(got, reference, strict=True):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
