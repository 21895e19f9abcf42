"""Streaming low-rank gradient sketches (heterolora/sketch.py) against the exact dense path."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from conftest import random_batches

from heterolora.budget import check_plan_budget
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.proxies import get_proxy
from heterolora.proxies.context import ProxyContext, batch_loss
from heterolora.search_space import discover
from heterolora.sites import discover_space
from heterolora.sketch import (
    DenseSite,
    SketchedSite,
    Sketches,
    groups_under,
    resolve_scoring,
    sketch_gradients,
    sketch_sizes,
    stream,
)

RANKS = [1, 2, 4, 8, 16]  # k = 33, l = 67: every site of the width-128 models below is sketched


def plan_limit(model: torch.nn.Module, config: AllocationConfig) -> int:
    return check_plan_budget(model, config, discover_space(model, config)).limit


def agreement(a: dict[str, int], b: dict[str, int], cost: dict[str, int], limit: int) -> float:
    """benchmarks/plan_stability.py's overlap: budget share both plans place at the same site."""
    return sum(cost[n] * min(a[n], b[n]) for n in a) / limit


def wide_model(arch: str, task: str) -> torch.nn.Module:
    """Two layers of width 128: wide enough that a rank-8 sketch is smaller than G."""
    common = {"vocab_size": 128, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "num_labels": 2}
    if arch == "llama":
        cfg = T.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=4, max_position_embeddings=64, **common)  # fmt: skip
    elif arch == "opt":
        cfg = T.OPTConfig(hidden_size=128, ffn_dim=256, num_hidden_layers=2, num_attention_heads=4,
                          word_embed_proj_dim=128, max_position_embeddings=64, **common)  # fmt: skip
    else:
        cfg = T.GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=64, **common)
    torch.manual_seed(0)
    cls = T.AutoModelForCausalLM if task == "causal-lm" else T.AutoModelForSequenceClassification
    return cls.from_config(cfg).eval()


def padded_batches(n: int, batch: int = 4, seq: int = 12, causal: bool = False) -> list[dict]:
    """conftest's random batches with the pad id at padded positions, as a tokenizer writes them
    (LLaMA's seq-cls head pools at the last non-pad id)."""
    out = random_batches(n, batch=batch, seq=seq, labels=None if causal else 2)
    for b in out:
        b["input_ids"][b["attention_mask"] == 0] = 0
    return out


def curves(model: torch.nn.Module, batches: list, scoring: str, ranks: list[int] = RANKS) -> dict:
    ctx = ProxyContext(model, batches, discover(model), ranks, scoring=scoring)
    return get_proxy("rank_energy").fn(ctx)


def worst_relative_error(streamed: dict, exact: dict) -> float:
    return max(abs(s - e) / e for n in exact for s, e in zip(streamed[n], exact[n], strict=True))


@pytest.mark.parametrize(("arch", "task"), [("llama", "causal-lm"), ("opt", "seq-cls"), ("gpt2", "causal-lm")])
def test_streamed_energy_curves_and_plans_match_exact(arch: str, task: str) -> None:
    model = wide_model(arch, task)
    # 2 x 2 x 8 = 32 tokens: G has rank <= 32 < k = 33, so a sketch of a random-weight model (flat
    # spectrum) is exact up to rounding; MiniLM below has the decaying spectrum of trained weights.
    batches = padded_batches(2, batch=2, seq=8, causal=task == "causal-lm")
    exact, streamed = curves(model, batches, "exact"), curves(model, batches, "stream")
    sketches = Sketches(discover(model), max(RANKS), 0, torch.device("cpu"))
    assert all(isinstance(s, SketchedSite) for s in sketches.sites.values())  # really sketched
    assert worst_relative_error(streamed, exact) < 0.01
    config = {"task": task, "rank_set": RANKS, "budget": {"trainable_params": 6000}, "num_batches": 2}
    plans = [compute_plan(model, batches, AllocationConfig(scoring=m, **config)) for m in ("exact", "stream")]
    assert [p.settings["scoring_mode"] for p in plans] == ["exact", "stream"]
    ranks = [{m.name: m.rank for m in p.modules} for p in plans]
    cost = {c.name: c.cost_per_rank for c in discover(model)}
    limit = plan_limit(model, AllocationConfig(**config))
    assert agreement(*ranks, cost, limit) >= 0.95
    if arch == "gpt2":  # fused qkv (Conv1D) is a site like any other
        assert any(m.type == "qkv" and m.rank > 0 for m in plans[1].modules)


def test_minilm_streamed_plan_matches_exact_on_mrpc(minilm) -> None:
    loaded, batches = minilm
    model = loaded.model
    exact = curves(model, batches, "exact", [1, 2, 4, 8, 16, 32, 64])
    streamed = curves(model, batches, "stream", [1, 2, 4, 8, 16, 32, 64])
    # k = 2r + 1 (the default) reaches 2.2 % on layer 0's FFN here, not the 1 % target; k = 4r + 1
    # would score MiniLM exactly (no sketch is smaller than its G). docs/proxies.md has the figures.
    assert worst_relative_error(streamed, exact) < 0.03
    config = {"budget": {"trainable_params": 100_000}, "num_batches": len(batches)}
    plans = [compute_plan(model, batches, AllocationConfig(scoring=m, **config)) for m in ("exact", "stream")]
    ranks = [{m.name: m.rank for m in p.modules} for p in plans]
    cost = {c.name: c.cost_per_rank for c in discover(model)}
    assert agreement(*ranks, cost, plan_limit(model, AllocationConfig(**config))) >= 0.95


def test_sketch_recovers_top_singular_triplets_of_a_known_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    d_out, d_in, tokens, rank = 96, 160, 512, 4
    # Tokens whose gradient G = Σ δ xᵀ has 4 dominant directions over a small full-rank tail.
    basis_x = torch.linalg.qr(torch.randn(d_in, rank, generator=g))[0]
    basis_d = torch.linalg.qr(torch.randn(d_out, rank, generator=g))[0]
    codes = torch.randn(tokens, rank, generator=g) * torch.tensor([8.0, 6.0, 4.0, 3.0])
    x = codes @ basis_x.T + 0.05 * torch.randn(tokens, d_in, generator=g)
    delta = torch.randn(tokens, rank, generator=g) @ basis_d.T + 0.05 * torch.randn(tokens, d_out, generator=g)
    dense = DenseSite(d_out, d_in, torch.device("cpu"))
    sketches = Sketches([_cand(d_out, d_in)], rank, 0, torch.device("cpu"))
    (site,) = sketches.sites.values()
    assert isinstance(site, SketchedSite) and site.y.shape == (d_out, sketch_sizes(rank)[0])
    for chunk in range(4):  # streamed in four "batches"
        rows = slice(chunk * 128, (chunk + 1) * 128)
        dense.add(x[rows], delta[rows])
        site.add(x[rows], delta[rows])
    want, got = dense.top(rank), site.top(rank)
    assert torch.allclose(got.s, want.s, rtol=0.01)
    assert (got.u * want.u).sum(0).abs().min() > 0.99  # same left singular vectors (up to sign)
    assert (got.vh * want.vh).sum(1).abs().min() > 0.99
    approx = got.u @ torch.diag(got.s) @ got.vh
    assert (approx - dense.g).norm() / dense.g.norm() < 0.05
    assert site.frobenius() == pytest.approx(dense.frobenius(), rel=0.15)


def _cand(d_out: int, d_in: int):
    from heterolora.search_space import Candidate

    return Candidate("site", "q", 0, d_in, d_out)


def test_stream_mode_creates_no_base_weight_gradients() -> None:
    model = wide_model("llama", "causal-lm")
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    grads_seen: list[str] = []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: grads_seen.append(name))
    plan = compute_plan(model, random_batches(2, labels=None), AllocationConfig(task="causal-lm", scoring="stream"))
    assert plan.settings["scoring_mode"] == "stream" and plan.settings["scoring_passes"] == 1
    assert grads_seen == []  # no parameter ever received a .grad
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


@pytest.mark.parametrize("task", ["causal-lm", "seq-cls"])
def test_padding_positions_carry_zero_gradient(task: str) -> None:
    model = wide_model("llama", task)
    batches = padded_batches(1, causal=task == "causal-lm")  # row 0 ends in 3 pads
    seen: list[torch.Tensor] = []

    class Recorder:
        def add(self, x: torch.Tensor, delta: torch.Tensor) -> None:
            seen.append(delta.reshape(4, 12, -1))

    stream(model, batches, {"model.layers.0.self_attn.q_proj": Recorder()}, lambda b: batch_loss(model, b))
    (delta,) = seen
    assert delta[0, -3:].abs().max() == 0  # padded tokens add nothing to G
    assert delta[0, :-3].abs().max() > 0 and delta[1:].abs().max() > 0


def test_auto_picks_exact_under_the_cap_and_stream_above() -> None:
    cands = discover(wide_model("llama", "causal-lm"))
    dense_mb = 4 * sum(c.d_out * c.d_in for c in cands) / 2**20
    assert resolve_scoring("auto", cands, int(dense_mb) + 1) == "exact"
    assert resolve_scoring("auto", cands, int(dense_mb) - 1) == "stream"
    assert resolve_scoring("exact", cands, 1) == "exact"
    groups = groups_under(cands, 3 * 4 * 128 * 128)
    assert [c for grp in groups for c in grp] == cands and len(groups) > 1
    assert all(sum(4 * c.d_out * c.d_in for c in grp) <= 3 * 4 * 128 * 128 or len(grp) == 1 for grp in groups)


def test_streamed_snip_is_exact_in_several_passes() -> None:
    model = wide_model("gpt2", "causal-lm")
    batches = random_batches(2, labels=None)
    cands = discover(model)
    exact = get_proxy("snip").fn(ProxyContext(model, batches, cands, [8]))
    ctx = ProxyContext(model, batches, cands, [8], scoring="stream", memory_cap_bytes=4 * 128 * 384 * 2)
    streamed = get_proxy("snip").fn(ctx)
    assert ctx.passes == len(groups_under(cands, ctx.memory_cap_bytes)) > 1
    assert streamed.keys() == exact.keys()
    assert all(streamed[n] == pytest.approx(exact[n], rel=1e-4) for n in exact)
    assert all(p.grad is None for p in model.parameters())


def test_streamed_grad_norm_is_close_to_exact() -> None:
    model = wide_model("opt", "seq-cls")
    batches = random_batches(4, batch=4, seq=16)
    cands = discover(model)
    exact = get_proxy("grad_norm").fn(ProxyContext(model, batches, cands, [1, 2, 4, 8, 16, 32, 64]))
    streamed = get_proxy("grad_norm").fn(
        ProxyContext(model, batches, cands, [1, 2, 4, 8, 16, 32, 64], scoring="stream")
    )
    ratios = [streamed[n] / exact[n] for n in exact]
    assert max(abs(r - 1) for r in ratios) < 0.1  # relative sd of the estimate ≤ √(2/(k+l)) ≈ 3 %


def test_bf16_weights_with_float32_sketches_and_checkpointing() -> None:
    model = wide_model("llama", "causal-lm")
    batches = random_batches(2, labels=None)
    cands = discover(model)
    reference = sketch_gradients(model, batches, cands, 8).top()
    checkpointed = sketch_gradients(model, batches, cands, 8, checkpointing=True).top()
    for name, low in reference.items():
        assert torch.allclose(checkpointed[name].s, low.s, rtol=1e-4)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules()) and not model.training
    model.to(torch.bfloat16)
    sketches = sketch_gradients(model, batches, cands, 8)
    for name, site in sketches.sites.items():
        assert site.y.dtype == torch.float32 and site.z.dtype == torch.float32
        top = sketches.top()[name].s
        assert torch.allclose(top[:2], reference[name].s[:2], rtol=0.1)  # bf16 rounding only


def test_streamed_synflow_matches_float64_exact_without_casting() -> None:
    model = wide_model("gpt2", "causal-lm")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    cands = discover(model)
    batches = padded_batches(1, causal=True)
    exact = get_proxy("synflow").fn(ProxyContext(model, batches, cands, [8]))
    ctx = ProxyContext(model, batches, cands, [8], scoring="stream", memory_cap_bytes=4 * 128 * 512)
    streamed = get_proxy("synflow").fn(ctx)
    assert ctx.passes > 1  # grouped
    assert all(streamed[n] == pytest.approx(exact[n], rel=1e-3) for n in exact)
    after = model.state_dict()
    assert all(torch.equal(after[n], before[n]) for n in before) and all(p.grad is None for p in model.parameters())


def test_sketch_oversampling_sets_the_sketch_width_and_keys_the_scores(monkeypatch) -> None:
    """`sketch_oversampling` reaches the sketches the proxies read (k = o * r_max + 1, l = 2k + 1),
    and scores computed with one width are never reused for another."""
    from conftest import tiny_model

    import heterolora.proxies.context as context
    from heterolora.scoring import score_key

    widths: list[tuple[int, int]] = []

    class Recording(context.Sketches):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            widths.append((self.k, self.l))

    monkeypatch.setattr(context, "Sketches", Recording)
    config = AllocationConfig(budget={"trainable_params": 2000}, rank_set=[1, 2, 4], scoring="stream")
    for oversampling in (2, 4):
        compute_plan(
            tiny_model("llama"), random_batches(), config.model_copy(update={"sketch_oversampling": oversampling})
        )
    assert widths == [(9, 19), (17, 35)]
    assert score_key(config) != score_key(config.model_copy(update={"sketch_oversampling": 4}))
    with pytest.raises(ValueError, match="sketch_oversampling"):
        AllocationConfig(sketch_oversampling=1)  # k = r + 1 leaves no oversampling at all
