"""Streamed scoring on CUDA: sketches live on the GPU in float32 whatever the weights' dtype, match
the exact path, and leave no base-weight gradient. Skipped without a GPU (`pytest tests/gpu -m gpu`)."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.proxies import get_proxy
from heterolora.proxies.context import ProxyContext
from heterolora.search_space import discover
from heterolora.sketch import SketchedSite, sketch_gradients

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _model(dtype: torch.dtype) -> torch.nn.Module:
    shape = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4}
    cfg = T.LlamaConfig(vocab_size=512, num_key_value_heads=4, max_position_embeddings=128, pad_token_id=0, **shape)
    torch.manual_seed(0)
    return T.LlamaForCausalLM(cfg).to("cuda", dtype).eval()


def _batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        ids = torch.randint(3, 512, (2, 8), generator=g).cuda()  # 32 tokens: rank(G) <= 32 < k
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_rank_energy_matches_exact_on_cuda(dtype: torch.dtype) -> None:
    model, batches = _model(dtype), _batches()
    cands = discover(model)
    exact = get_proxy("rank_energy").fn(ProxyContext(model, batches, cands, [1, 2, 4, 8]))
    ctx = ProxyContext(model, batches, cands, [1, 2, 4, 8], scoring="stream")
    streamed = get_proxy("rank_energy").fn(ctx)
    sites = ctx.sketches().sites
    assert all(isinstance(s, SketchedSite) and s.y.is_cuda and s.y.dtype == torch.float32 for s in sites.values())
    tol = 1e-3 if dtype == torch.float32 else 0.05  # bf16: the exact path's .grad is rounded to bf16
    for name, curve in exact.items():
        assert streamed[name] == pytest.approx(curve, rel=tol)
    assert all(p.grad is None for p in model.parameters())


def test_streamed_plan_with_checkpointing_and_top_vectors_on_cuda() -> None:
    model, batches = _model(torch.bfloat16), _batches()
    plan = compute_plan(
        model, batches, AllocationConfig(task="causal-lm", scoring="stream", gradient_checkpointing=True)
    )
    assert plan.settings["scoring_mode"] == "stream" and plan.budget.used > 0
    top = sketch_gradients(model, batches, discover(model), 8).top()
    for low in top.values():
        assert low.u.is_cuda and low.s.shape == (8,) and bool((low.s[:-1] >= low.s[1:]).all())


def test_streamed_gradient_init_on_cuda_in_bf16() -> None:
    """init="gradient" with streamed scoring on a bf16 model: the A/B file comes from the sketches
    (no base-weight gradient), float32 on the CPU, and apply_plan loads it into a CUDA PeftModel."""
    from safetensors.torch import load

    from heterolora.apply import apply_plan
    from heterolora.init.format import adapter_key

    model, batches = _model(torch.bfloat16), _batches()
    config = AllocationConfig(task="causal-lm", scoring="stream", init="gradient", rank_set=[2, 4, 8])
    plan = compute_plan(model, batches, config)
    assert plan.settings["scoring_passes"] == 1 and plan.settings["weights_dtype"] == "bfloat16"
    assert all(p.grad is None for p in model.parameters())
    tensors = load(plan.init_data)
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    peft_model = apply_plan(model, plan, learning_rate=plan.recommended_learning_rate)
    name = next(m.name for m in plan.lora_modules if m.rank > 0)
    layer = peft_model.get_base_model().get_submodule(name)
    assert torch.equal(layer.lora_B["default"].weight.float().cpu(), tensors[adapter_key(name, "B")])
