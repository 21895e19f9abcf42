"""Dynamic HeteroLoRA with LoRA-adapted shortcuts (modes combined and separated) on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_batches, tiny_model

from heterolora.dynamic import DynamicConfig, DynamicController, prepare_model
from heterolora.dynamic.selection import score_keys


def _controller(arch: str = "bert", **cfg) -> DynamicController:
    torch.manual_seed(0)
    model = prepare_model(tiny_model(arch), rank=4, shortcuts=True)
    return DynamicController(model, random_batches(2, seed=1), DynamicConfig(**{"mode": "combined", **cfg}))


def _shortcuts(ctl: DynamicController) -> list:
    return [u for u in ctl.units if u.kind == "shortcut"]


def test_every_shortcut_site_is_a_unit_at_its_rank() -> None:
    ctl = _controller()
    short = _shortcuts(ctl)
    assert len(short) == 4 * 2 - 1  # 4 per layer, no shortcut_ffn in layer 0
    assert {u.type for u in short} == {"residual1", "residual2", "shortcut_sa", "shortcut_ffn"}
    assert all(u.params == 4 * 2 * 32 and u.rank == 4 for u in short)  # r * 2d, d = 32
    assert len(ctl.units) == 12 + 7  # LoRA units first


def test_switched_off_shortcuts_add_nothing_and_get_no_grad() -> None:
    ctl = _controller()
    model, batch = ctl.model, random_batches(1, seed=5)[0]
    with torch.no_grad():
        for u in _shortcuts(ctl):
            u.module.B.normal_(0, 0.5)
    lora = [u.name for u in ctl.units if u.kind == "lora"]
    ctl.set_active(lora)
    before = model(**batch).logits.detach()
    with torch.no_grad():
        for u in _shortcuts(ctl):
            u.module.B.mul_(3.0)
    assert torch.equal(model(**batch).logits, before)
    on = _shortcuts(ctl)[2]
    ctl.set_active([*lora, on.name])
    model(**batch).loss.backward()
    for u in _shortcuts(ctl):
        assert all((p.grad is not None) == (u is on) for p in u.parameters())
    assert not torch.equal(model(**batch).logits, before)


@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("mode", ["combined", "separated"])
def test_modes_select_the_authors_counts_and_train_only_those(arch: str, mode: str) -> None:
    ctl = _controller(arch, mode=mode, active_fraction=0.25)
    n_lora = sum(u.kind == "lora" for u in ctl.units)
    n_short = len(_shortcuts(ctl))
    ctl.reallocate(0)
    on = [u for u in ctl.units if u.name in ctl.active]
    assert len(on) == max(1, math.floor(0.25 * n_lora)) + max(1, round(0.25 * n_short))
    if mode == "separated":
        assert sum(u.kind == "shortcut" for u in on) == max(1, round(0.25 * n_short))
    ctl.model.train()
    ctl.model(**random_batches(1, seed=3)[0]).loss.backward()
    for u in ctl.units:
        assert all((p.grad is not None) == (u.name in ctl.active) for p in u.parameters())


def test_combined_mode_ranks_scores_over_their_family_mean() -> None:
    ctl = _controller()
    scores = {u.name: (10.0 if u.kind == "lora" else 0.01) * (1 + i) for i, u in enumerate(ctl.units)}
    keys = score_keys(ctl.units, scores, ctl.config)
    for kind in ("lora", "shortcut"):
        family = [keys[u.name][0] for u in ctl.units if u.kind == kind]
        assert sum(family) / len(family) == pytest.approx(1.0)
    assert score_keys(ctl.units, scores, DynamicConfig(mode="separated"))[ctl.units[0].name] == (10.0,)


def test_checkpoint_restores_shortcut_weights_and_mask(tmp_path) -> None:
    ctl = _controller(mode="separated", realloc_every=1)  # separated: some shortcuts always train
    opt = torch.optim.AdamW([p for p in ctl.model.parameters() if p.requires_grad], lr=1e-2)
    ctl.model.train()
    for step in range(3):
        ctl.maybe_reallocate(step)
        ctl.model(**random_batches(1, seed=step)[0]).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert any(float(u.module.B.detach().abs().sum()) > 0 for u in _shortcuts(ctl))  # trained, not at init
    ctl.save(tmp_path)
    fresh = _controller(mode="separated", realloc_every=1)
    fresh.load(tmp_path)
    assert fresh.active == ctl.active and fresh.history == ctl.history
    for a, b in zip(_shortcuts(fresh), _shortcuts(ctl), strict=True):
        assert a.enabled == b.enabled
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_export_with_shortcuts_is_a_static_plan() -> None:
    from heterolora.apply import apply_plan
    from heterolora.shortcuts import shortcut_parameters

    ctl = _controller(mode="separated")
    ctl.reallocate(0)
    plan = ctl.export_plan()
    chosen = {m.name for m in plan.modules if m.rank}
    assert chosen == set(ctl.active)
    assert plan.shortcuts is not None and plan.shortcuts["mode"] == "separated"
    assert len(plan.shortcut_modules) == 7
    static = apply_plan(tiny_model("bert"), plan)
    used = sum(m.params for m in plan.shortcut_modules)
    assert sum(p.numel() for p in shortcut_parameters(static.get_base_model())) == used > 0
