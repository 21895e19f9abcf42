"""Dynamic HeteroLoRA on the embedded MiniLM and the built-in sample: a plain loop and a Trainer."""

from __future__ import annotations

import copy
import itertools
import time

import pytest
import torch

from heterolora.dynamic import STATE_FILE, DynamicCallback, DynamicConfig, DynamicController, prepare_model
from heterolora.samples import builtin_sample, make_batches

STEPS, EVERY, BUDGET = 30, 10, 50_000  # 36 MiniLM units at rank 4 hold 193,536 parameters


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two threads on two shared cores oversubscribe badly (about 15x slower per step here).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(minilm):
    loaded, _ = minilm
    batches = make_batches(
        builtin_sample(),
        loaded.tokenizer,
        task="seq-cls",
        batch_size=4,
        num_batches=32,
        max_length=32,
        seed=0,
        labels={0: 0, 1: 1},
    )
    return loaded, batches[:2], batches[2:]  # fixed scoring set, training batches


def _wrapped(loaded):
    torch.manual_seed(0)
    return prepare_model(copy.deepcopy(loaded.model), rank=4)  # the session model stays unwrapped


@pytest.fixture(scope="module")
def run30(data):
    """30 plain-loop steps, re-scoring every 10, recording per step which parameters got a gradient."""
    loaded, scoring, train = data
    model = _wrapped(loaded)
    ctl = DynamicController(model, scoring, DynamicConfig(realloc_every=EVERY, active_params=BUDGET))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    unit_of = {id(p): u.name for u in ctl.units for p in u.parameters()}
    model.train()
    with_grad, step_s = [], []
    for step in range(STEPS):
        ctl.maybe_reallocate(step)
        t0 = time.perf_counter()
        model(**train[step % len(train)]).loss.backward()
        with_grad.append(
            (
                sum(p.numel() for p in model.parameters() if id(p) in unit_of and p.grad is not None),
                {unit_of[id(p)] for p in model.parameters() if id(p) in unit_of and p.grad is not None},
                set(ctl.active),
            )
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - t0)
    return ctl, with_grad, step_s


def test_three_reallocations_in_30_steps_change_the_active_set(run30) -> None:
    ctl, _, _ = run30
    assert [r["step"] for r in ctl.history] == [0, 10, 20]
    sets = [set(r["active"]) for r in ctl.history]
    changed = [len(a ^ b) for a, b in itertools.pairwise(sets)]
    assert sum(changed) > 0, changed
    assert len({frozenset(s) for s in sets}) >= 2
    assert ctl.model.training  # scoring ran in eval mode and restored train mode


def test_active_trainable_params_never_exceed_the_budget(run30) -> None:
    ctl, with_grad, _ = run30
    for grad_params, grad_units, active in with_grad:
        assert grad_params <= BUDGET
        assert grad_units == active  # exactly the active units were trained
    assert all(r["active_params"] <= BUDGET for r in ctl.history)
    assert max(r["active_params"] for r in ctl.history) > 0.8 * BUDGET  # the greedy fill uses the budget


def test_reallocation_cpu_overhead_is_reported(run30) -> None:
    ctl, _, step_s = run30
    realloc = [r["seconds"] for r in ctl.history]
    mean_step, mean_realloc = sum(step_s) / len(step_s), sum(realloc) / len(realloc)
    overhead = sum(realloc) / sum(step_s)
    print(
        f"\nMiniLM CPU (1 thread), batch 4 x <=32 tokens, 36 units at rank 4, K=2 scoring batches: "
        f"train step {mean_step * 1000:.0f} ms, reallocation {mean_realloc * 1000:.0f} ms "
        f"(= {mean_realloc / mean_step:.1f} steps); {len(realloc)} reallocations in {STEPS} steps add "
        f"{overhead:.0%} to training time"
    )
    assert all(s > 0 for s in realloc) and ctl.export_plan().timings["realloc_mean_s"] > 0


class _Rows(torch.utils.data.Dataset):
    def __init__(self, batches: list[dict]) -> None:
        self.rows = [{k: v[i] for k, v in b.items()} for b in batches for i in range(len(b["labels"]))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _trainer(loaded, scoring, train, out, max_steps: int, resume_from=None):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model = _wrapped(loaded)
    ctl = DynamicController(model, scoring, DynamicConfig(realloc_every=3, seed=1))
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        save_steps=4,
        per_device_train_batch_size=4,
        learning_rate=2e-2,
        report_to=[],
        use_cpu=True,
        logging_steps=100,
        seed=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_Rows(train[:8]),
        data_collator=DataCollatorWithPadding(loaded.tokenizer),
        callbacks=[DynamicCallback(ctl, export_to=out / "plan.json")],
    )
    trainer.train(resume_from_checkpoint=resume_from)
    return ctl


def test_trainer_checkpoint_saves_and_resume_restores_the_mask(data, tmp_path) -> None:
    import json

    from heterolora.plans import Plan

    loaded, scoring, train = data
    first = _trainer(loaded, scoring, train, tmp_path, max_steps=8)  # 8 steps = 1 epoch; re-scores at 0, 3, 6
    assert [r["step"] for r in first.history] == [0, 3, 6]
    saved = json.loads((tmp_path / "checkpoint-4" / STATE_FILE).read_text())
    assert [r["step"] for r in saved["history"]] == [0, 3]
    assert saved["active"] == first.history[1]["active"]

    resumed = _trainer(loaded, scoring, train, tmp_path, max_steps=5, resume_from=str(tmp_path / "checkpoint-4"))
    assert resumed.history == saved["history"]  # step 4 is not due: the mask is the restored one
    assert sorted(resumed.active) == saved["active"]
    assert sorted(u.name for u in resumed.units if u.enabled) == saved["active"]
    plan = Plan.load(tmp_path / "plan.json")
    assert {m.name for m in plan.modules if m.rank} == set(saved["active"])
    assert plan.settings["reallocations"] == 2
