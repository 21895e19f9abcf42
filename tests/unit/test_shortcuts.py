"""Shortcut modules on tiny models: layout per architecture, exact function preservation, routing,
scoring probes for every proxy, selection per family, plan entries, apply / save / load."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import ARCHS, random_batches, tiny_config, tiny_model

from heterolora.allocation import choose_ranks, scalar_curve
from heterolora.apply import apply_plan, load_adapted, save_adapted
from heterolora.config import SHORTCUT_TYPES, AllocationConfig
from heterolora.engine import compute_plan
from heterolora.errors import BudgetError, PlanError, UnsupportedModelError
from heterolora.proxies import PROXIES
from heterolora.proxies.context import ProxyContext
from heterolora.search_space import Candidate
from heterolora.shortcuts import (
    LowRankShortcut,
    find_layout,
    get_router,
    reference_weight,
    remove_shortcuts,
    scoring_probes,
    shortcut_candidates,
    shortcut_parameters,
)
from heterolora.shortcuts.hooks import install

PLACEMENT = {"bert": "post", "roberta": "post", "opt": "post", "opt_prenorm": "pre", "llama": "pre", "gpt2": "pre"}
SMALL = {"budget": {"trainable_params": 3000}, "rank_set": [2, 4, 8]}


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    batch = random_batches(1, seed=seed)[0]
    batch.pop("labels")
    return batch


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _attach_all(model: torch.nn.Module, rank: int = 4, types: tuple[str, ...] = SHORTCUT_TYPES) -> None:
    mods: dict[int, dict[str, torch.nn.Module]] = {}
    for c in shortcut_candidates(model):
        if c.type in types:
            mods.setdefault(c.layer, {})[c.type] = LowRankShortcut(c.d_in, rank, 2.0 * rank)
    install(model, find_layout(model), mods)


def _randomise_b(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in shortcut_parameters(model):
            if p.shape[0] > p.shape[1]:  # B is (d, r)
                p.normal_(0, 0.5)


# ---- modules and layout ----------------------------------------------------------------------
def test_low_rank_shortcut_init_params_and_scale() -> None:
    torch.manual_seed(0)
    m = LowRankShortcut(32, 4, 8.0)
    assert sum(p.numel() for p in m.parameters()) == 4 * 2 * 32
    assert m.scale == 2.0 and torch.count_nonzero(m.B) == 0
    bound = 1 / math.sqrt(32)  # kaiming_uniform(a=sqrt(5)) on a (4, 32) weight
    assert m.A.abs().max() <= bound and m.A.abs().max() > 0.5 * bound
    assert torch.equal(m.term(torch.randn(3, 5, 32)), torch.zeros(3, 5, 32))
    assert LowRankShortcut(32, 4, 8.0, rslora=True).scale == 4.0


@pytest.mark.parametrize("arch", ARCHS)
def test_layout_and_candidates(arch: str) -> None:
    model = tiny_model(arch)
    layout = find_layout(model)
    assert layout.placement == PLACEMENT[arch] and layout.hidden_size == 32
    cands = shortcut_candidates(model)
    assert len(cands) == 4 * 2 - 1  # no shortcut_ffn in layer 0
    assert {(c.layer, c.type) for c in cands if c.type == "shortcut_ffn"} == {(1, "shortcut_ffn")}
    assert all(c.cost_per_rank == 64 for c in cands)  # r * 2 * d parameters


def test_unsupported_layouts_say_why() -> None:
    import transformers as T

    neox = T.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    with pytest.raises(UnsupportedModelError, match="use_parallel_residual"):
        find_layout(T.AutoModelForCausalLM.from_config(neox))
    bert = tiny_config("bert")
    bert.chunk_size_feed_forward = 4
    with pytest.raises(UnsupportedModelError, match="chunk_size_feed_forward"):
        find_layout(T.AutoModelForSequenceClassification.from_config(bert))
    distil = T.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=128)
    with pytest.raises(UnsupportedModelError, match="no known LayerNorm placement"):
        find_layout(T.AutoModelForSequenceClassification.from_config(distil))


# ---- function preservation and routing ---------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_all_shortcuts_at_init_keep_logits_and_trained_ones_change_them(arch: str) -> None:
    model = tiny_model(arch)
    batch = _inputs()
    base = _logits(model, batch)
    _attach_all(model)
    assert torch.allclose(_logits(model, batch), base, atol=1e-5, rtol=0)
    _randomise_b(model)
    assert (_logits(model, batch) - base).abs().max() > 1e-3
    remove_shortcuts(model)
    assert get_router(model) is None and not any("shortcuts" in n for n, _ in model.named_modules())
    assert torch.equal(_logits(model, batch), base)


@pytest.mark.parametrize("arch", ["bert", "opt_prenorm"])
@pytest.mark.parametrize("kind", SHORTCUT_TYPES)
def test_each_type_alone_reaches_the_output(arch: str, kind: str) -> None:
    model = tiny_model(arch)
    batch = _inputs()
    base = _logits(model, batch)
    _attach_all(model, types=(kind,))
    _randomise_b(model)
    assert (_logits(model, batch) - base).abs().max() > 1e-4


class _Spy(torch.nn.Module):
    """Records what it reads and adds a constant: checks sources and targets of each route."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value, self.seen = value, None

    def term(self, u: torch.Tensor) -> torch.Tensor:
        self.seen = u.detach().clone()
        return torch.full_like(u, self.value)


def test_routes_read_layer_and_ffn_inputs_and_add_before_the_layernorm_post_ln() -> None:
    model = tiny_model("bert")
    layers = model.bert.encoder.layer
    seen: dict[str, torch.Tensor] = {}
    layers[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("x1", a[0].clone()))
    layers[0].intermediate.register_forward_pre_hook(lambda m, a: seen.__setitem__("f0", a[0].clone()))
    layers[1].intermediate.register_forward_pre_hook(lambda m, a: seen.__setitem__("f1", a[0].clone()))
    spies = {k: _Spy(0.0) for k in SHORTCUT_TYPES}
    install(model, find_layout(model), {1: dict(spies)})
    _logits(model, _inputs())
    assert torch.equal(spies["residual1"].seen, seen["x1"]) and torch.equal(spies["shortcut_sa"].seen, seen["x1"])
    assert torch.equal(spies["residual2"].seen, seen["f1"]) and torch.equal(spies["shortcut_ffn"].seen, seen["f0"])
    # target: a constant term c on the FFN side arrives in the FFN LayerNorm's input as exactly +c
    remove_shortcuts(model)
    ln_in: list[torch.Tensor] = []
    norm = layers[1].output.LayerNorm
    handle = norm.register_forward_pre_hook(lambda m, a: ln_in.append(a[0].clone()))
    _logits(model, _inputs())
    handle.remove()
    install(model, find_layout(model), {1: {"shortcut_sa": _Spy(0.25)}})
    norm.register_forward_pre_hook(lambda m, a: ln_in.append(a[0].clone()))  # runs after the add
    _logits(model, _inputs())
    assert torch.allclose(ln_in[1] - ln_in[0], torch.full_like(ln_in[0], 0.25), atol=1e-6)


def test_routes_add_into_the_residual_stream_pre_ln() -> None:
    model = tiny_model("llama")
    layer = model.model.layers[1]
    outs: list[torch.Tensor] = []
    mlp_out: list[torch.Tensor] = []
    layer.register_forward_hook(lambda m, a, o: outs.append(o.clone()))
    layer.mlp.register_forward_hook(lambda m, a, o: mlp_out.append(o.clone()))
    _logits(model, _inputs())
    spies = {"residual1": _Spy(0.0), "residual2": _Spy(0.0), "shortcut_sa": _Spy(0.5)}
    install(model, find_layout(model), {1: spies})
    _logits(model, _inputs())
    # FFN input f = stream after attention = layer output - MLP output (all terms but +0.5 are 0)
    assert torch.allclose(spies["residual2"].seen, outs[0] - mlp_out[0], atol=1e-6)
    assert torch.allclose(outs[1] - outs[0], torch.full_like(outs[0], 0.5), atol=1e-6)
    # an attention-side term joins the stream that enters the FFN (the input of its LayerNorm)
    remove_shortcuts(model)
    ffn_in: list[torch.Tensor] = []
    layer.post_attention_layernorm.register_forward_pre_hook(lambda m, a: ffn_in.append(a[0].clone()))
    _logits(model, _inputs())
    install(model, find_layout(model), {1: {"residual1": _Spy(0.5)}})
    _logits(model, _inputs())
    assert torch.allclose(ffn_in[1] - ffn_in[0], torch.full_like(ffn_in[0], 0.5), atol=1e-6)


# ---- scoring ---------------------------------------------------------------------------------
@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_every_proxy_scores_shortcuts_and_leaves_the_model_unchanged(proxy: str) -> None:
    model = tiny_model("opt_prenorm")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    plan = compute_plan(model, random_batches(2), AllocationConfig(proxy=proxy, shortcuts=True, **SMALL))
    scores = [m.score for m in plan.shortcut_modules]
    assert len(scores) == 7 and all(math.isfinite(s) and s >= 0 for s in scores)
    if proxy != "constant":
        assert len(set(scores)) > 1, f"{proxy} gives every shortcut the same score"
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)
    assert get_router(model) is None and all(not layer._forward_hooks for layer in model.model.decoder.layers)


def test_snip_and_grad_norm_on_shortcuts_read_the_probe_gradient() -> None:
    model = tiny_model("llama")
    cands = shortcut_candidates(model)
    ctx = ProxyContext(model, random_batches(2), cands, [8], reference_weight=reference_weight)
    with scoring_probes(model, cands):
        grads = ctx.weight_grads()
        snip = PROXIES["snip"].fn(ctx)
        grad_norm = PROXIES["grad_norm"].fn(ctx)
    for c in cands:
        g = grads[c.name]
        assert g.shape == (32, 32) and g.abs().sum() > 0
        assert grad_norm[c.name] == pytest.approx(float(g.norm()))
        assert snip[c.name] == pytest.approx(float(g.diagonal().abs().sum()), rel=1e-6)  # |I ⊙ G|


# ---- selection per family ----------------------------------------------------------------------
def _cands() -> tuple[list[Candidate], list[Candidate]]:
    lora = [Candidate(f"l{i}", "v", i, 5, 5) for i in range(2)]  # 10 parameters per rank
    short = [Candidate(f"s{i}", "residual1", i, 10, 10) for i in range(2)]  # 20 per rank
    return lora, short


def _curves(scores: dict[str, float], ranks: list[int]) -> dict[str, list[float]]:
    return {n: scalar_curve(s, ranks) for n, s in scores.items()}


def test_combined_normalises_each_family_by_its_mean() -> None:
    lora, short = _cands()
    curves = _curves({"l0": 1, "l1": 3, "s0": 100, "s1": 300}, [8])  # shortcuts 100x larger raw
    cfg = AllocationConfig(shortcuts=True, budget={"fraction": 0.5, "rank": 8})
    ranks = choose_ranks(lora, short, curves, [8], 0, cfg)
    # floor(0.5*2) + round(0.5*2) = 2 picks on normalised scores {l1: 1.5, s1: 1.5, l0: .5, s0: .5}
    assert ranks == {"l0": 0, "l1": 8, "s0": 0, "s1": 8}


def test_combined_parameter_budget_is_one_allocation_over_both_families() -> None:
    lora, short = _cands()
    curves = _curves({"l0": 1, "l1": 3, "s0": 100, "s1": 300}, [2, 4])
    cfg = AllocationConfig(shortcuts=True, budget={"trainable_params": 120}, rank_set=[2, 4])
    ranks = choose_ranks(lora, short, curves, [2, 4], 120, cfg)
    cost = {"l0": 10, "l1": 10, "s0": 20, "s1": 20}
    # greedy on value per parameter of the normalised curves fills 120 of 120
    assert ranks == {"l0": 4, "l1": 4, "s0": 0, "s1": 2}
    assert sum(cost[n] * r for n, r in ranks.items()) == 120


def test_separated_gives_each_family_its_share() -> None:
    lora, short = _cands()
    curves = _curves({"l0": 1, "l1": 3, "s0": 100, "s1": 300}, [2, 4])
    cfg = AllocationConfig(shortcuts=True, shortcut_mode="separated", shortcut_share=0.4, rank_set=[2, 4])
    ranks = choose_ranks(lora, short, curves, [2, 4], 200, cfg)
    assert 10 * (ranks["l0"] + ranks["l1"]) <= 120 and 20 * (ranks["s0"] + ranks["s1"]) <= 80
    assert ranks == {"l0": 4, "l1": 4, "s0": 0, "s1": 4}
    fraction = AllocationConfig(shortcuts=True, shortcut_mode="separated", budget={"fraction": 0.5, "rank": 8})
    assert choose_ranks(lora, short, _curves({"l0": 1, "l1": 3, "s0": 300, "s1": 100}, [8]), [8], 0, fraction) == {
        "l0": 0,
        "l1": 8,
        "s0": 8,
        "s1": 0,
    }
    with pytest.raises(BudgetError, match="shortcut share"):
        choose_ranks(lora, short, curves, [2, 4], 60, cfg)  # 24 < one rank-2 shortcut (40)


def test_a_share_too_small_fails_before_scoring() -> None:
    phases: list[str] = []
    cfg = AllocationConfig(shortcuts=True, shortcut_mode="separated", shortcut_share=0.04, **SMALL)
    with pytest.raises(BudgetError, match="shortcut share of the budget \\(120 parameters\\)") as err:
        compute_plan(tiny_model("gpt2"), random_batches(2), cfg, progress=lambda f, msg: phases.append(msg))
    assert err.value.field == "shortcut_share" and phases == []  # 0.04 * 3000 < 2 * 2 * 32


# ---- plans, apply, save and load -------------------------------------------------------------
def test_plan_entries_budget_and_section() -> None:
    model = tiny_model("bert")
    plan = compute_plan(model, random_batches(2), AllocationConfig(shortcuts=True, **SMALL))
    sc = plan.shortcut_modules
    assert [(m.layer, m.type) for m in sc][:4] == [(0, t) for t in SHORTCUT_TYPES[:3]] + [(1, "residual1")]
    assert all(m.kind == "shortcut" and m.params == m.rank * 2 * 32 and m.d_in == m.d_out == 32 for m in sc)
    alphas = {m.alpha for m in plan.modules if m.rank}
    assert len(alphas) == 1 and plan.alpha_mode == "rslora"  # the default: one alpha, as for LoRA
    assert plan.budget.used == sum(m.params for m in plan.modules) <= plan.budget.limit == 3000
    assert sum(m.params for m in sc) > 0 and sum(m.params for m in plan.lora_modules) > 0
    assert set(plan.peft.target_modules) == {m.name for m in plan.lora_modules if m.rank > 0}
    section = plan.shortcuts
    assert section["layout"] == {
        "placement": "post",
        "layers": "bert.encoder.layer",
        "attn": "attention.output.LayerNorm",
        "ffn_norm": "output.LayerNorm",
        "hidden_size": 32,
    }
    assert section["mode"] == "combined" and section["candidates"] == 7 and section["scaling"] == "alpha/sqrt(r)"
    assert type(plan).model_validate_json(plan.to_json()) == plan
    assert "residual1" in plan.table().splitlines()[0] and "shortcut_ffn" in plan.table().splitlines()[0]


@pytest.mark.parametrize("arch", ["opt", "llama"])
def test_apply_trains_only_planned_params_and_round_trips(tmp_path, arch: str) -> None:
    model = tiny_model(arch)
    fresh = copy.deepcopy(model)
    plan = compute_plan(model, random_batches(2), AllocationConfig(shortcuts=True, shortcut_mode="separated", **SMALL))
    peft_model = apply_plan(model, plan, train_head=False)
    trainable = {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == plan.budget.used
    assert all(".lora_" in n or ".shortcuts." in n for n in trainable)
    assert sum(v for n, v in trainable.items() if ".shortcuts." in n) == sum(m.params for m in plan.shortcut_modules)
    with torch.no_grad():  # stand-in for training: every B non-zero
        for n, p in peft_model.named_parameters():
            if n.endswith((".B", "lora_B.default.weight")):
                p.normal_(0, 0.1)
    batch = _inputs(seed=3)
    want = _logits(peft_model, batch)
    assert (want - _logits(fresh, batch)).abs().max() > 1e-4
    loaded = load_adapted(fresh, save_adapted(peft_model, tmp_path / "adapted"))
    assert torch.equal(_logits(loaded, batch), want)
    assert not any(p.requires_grad for p in loaded.parameters())
    merged = loaded.merge_and_unload()  # LoRA folds into the weights; shortcuts stay modules
    assert get_router(merged) is not None and torch.allclose(_logits(merged, batch), want, atol=1e-5)


def test_apply_rejects_a_plan_for_another_layout() -> None:
    plan = compute_plan(tiny_model("opt"), random_batches(2), AllocationConfig(shortcuts=True, **SMALL))
    other = tiny_model("opt_prenorm")
    with pytest.raises(PlanError, match="layout"):
        apply_plan(other, plan)
    assert not any("lora_" in n for n, _ in other.named_parameters())  # refused before PEFT
