"""Shortcuts on the real embedded MiniLM: function preservation, a 30-step training run with a
shortcut plan, save/load round trip, and the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from click.testing import CliRunner

from heterolora.apply import apply_plan, load_adapted, save_adapted
from heterolora.cli import main
from heterolora.config import SHORTCUT_TYPES, AllocationConfig
from heterolora.engine import compute_plan
from heterolora.planner import prepare
from heterolora.samples import builtin_sample
from heterolora.search_space import head_modules
from heterolora.shortcuts import LowRankShortcut, find_layout, remove_shortcuts, shortcut_candidates
from heterolora.shortcuts.hooks import install

STEPS = 30


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _mean_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    model.eval()
    with torch.no_grad():
        return sum(float(model(**b).loss) for b in batches) / len(batches)


def test_every_shortcut_at_init_keeps_minilm_logits(minilm) -> None:
    loaded, batches = minilm
    model = copy.deepcopy(loaded.model).eval()
    base = _logits(model, batches[0])
    cands = shortcut_candidates(model)
    assert len(cands) == 4 * 6 - 1 and {c.d_in for c in cands} == {384}
    modules: dict[int, dict[str, torch.nn.Module]] = {}
    for c in cands:
        modules.setdefault(c.layer, {})[c.type] = LowRankShortcut(384, 8, 16.0)
    install(model, find_layout(model), modules)
    assert torch.allclose(_logits(model, batches[0]), base, atol=1e-5, rtol=0)
    with torch.no_grad():
        for layer in modules.values():
            for m in layer.values():
                m.B.normal_(0, 0.05)
    assert (_logits(model, batches[0]) - base).abs().max() > 1e-3
    remove_shortcuts(model)
    assert torch.equal(_logits(model, batches[0]), base)


@pytest.fixture(scope="module")
def trained(minilm, tmp_path_factory):
    """A grad_norm shortcut plan, applied to a copy of MiniLM and trained for 30 steps."""
    loaded, batches = minilm
    plan = compute_plan(loaded.model, batches[:2], AllocationConfig(shortcuts=True, num_batches=2))
    fresh = copy.deepcopy(loaded.model)
    model = apply_plan(copy.deepcopy(loaded.model), plan)
    _, train = prepare(
        "minilm", builtin_sample(), AllocationConfig(num_batches=8, batch_size=4, max_length=48), loaded=loaded
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss0 = _mean_loss(model, train)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    torch.manual_seed(0)
    model.train()
    for step in range(STEPS):
        model(**train[step % len(train)]).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    loss1 = _mean_loss(model, train)
    return plan, model, fresh, before, (loss0, loss1), train, tmp_path_factory.mktemp("adapted")


def test_shortcut_plan_trains_only_planned_parameters(trained) -> None:
    plan, model, fresh, before, (loss0, loss1), _, _ = trained
    enabled = [m for m in plan.shortcut_modules if m.rank > 0]
    assert enabled and {m.type for m in plan.shortcut_modules} == set(SHORTCUT_TYPES)
    assert loss1 < loss0 - 0.05, (loss0, loss1)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    head = sum(p.numel() for n in head_modules(fresh) for p in fresh.get_submodule(n).parameters())
    assert head == 384 * 2 + 2  # the classifier over mean pooling (modules_to_save)
    trained_count = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    assert trained_count == plan.budget.used + head
    shortcut_count = sum(p.numel() for n, p in model.named_parameters() if ".shortcuts." in n)
    assert shortcut_count == sum(m.params for m in enabled) > 0
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == names  # every planned parameter moved, nothing else did


def test_trained_adapter_round_trips_to_identical_logits(trained) -> None:
    _, model, fresh, _, _, train, folder = trained
    model.eval()
    want = _logits(model, train[0])
    loaded = load_adapted(copy.deepcopy(fresh), save_adapted(model, folder))
    assert json.loads((folder / "plan.json").read_text())["shortcuts"]["layout"]["placement"] == "post"
    assert torch.equal(_logits(loaded, train[0]), want)
    merged = loaded.merge_and_unload()
    assert torch.allclose(_logits(merged, train[0]), want, atol=1e-4)


def test_cli_plan_with_shortcuts(tmp_path) -> None:
    out = tmp_path / "plan.json"
    args = ["plan", "--shortcuts", "--proxy", "constant", "--num-batches", "1", "--device", "cpu", "-o", str(out)]
    combined = CliRunner().invoke(main, args)
    assert combined.exit_code == 0, combined.output
    lines = combined.stdout.splitlines()
    assert lines[0].split()[-4:] == list(SHORTCUT_TYPES) and len(lines) == 1 + 6 + 2  # + budget and training lines
    assert lines[1].split()[-1] == "-" and lines[2].split()[-1] != "-"  # no shortcut_ffn in layer 0
    separated = CliRunner().invoke(main, [*args, "--shortcut-mode", "separated", "--shortcut-share", "0.25"])
    assert separated.exit_code == 0, separated.output
    data = json.loads(out.read_text())
    shortcut_params = sum(m["params"] for m in data["modules"] if m["kind"] == "shortcut")
    assert data["shortcuts"]["mode"] == "separated" and 0 < shortcut_params <= 0.25 * 73_728
    assert data["budget"]["used"] == sum(m["params"] for m in data["modules"]) <= 73_728
