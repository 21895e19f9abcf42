"""End-to-end planning on the embedded MiniLM: determinism, budgets, head warm-up, labels."""

from __future__ import annotations

import pytest

import heterolora
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.errors import DataError
from heterolora.samples import builtin_sample

FAST = {"num_batches": 2, "batch_size": 8}


def test_same_inputs_same_plan(minilm) -> None:
    loaded, batches = minilm
    cfg = AllocationConfig(**FAST)
    a = compute_plan(loaded.model, batches[:2], cfg, model_id="minilm", revision=loaded.revision)
    b = compute_plan(loaded.model, batches[:2], cfg, model_id="minilm", revision=loaded.revision)
    assert a.fingerprint() == b.fingerprint()
    assert a.model.revision.startswith("sha256:") and a.model.num_layers == 6
    assert a.budget.limit == 73_728  # uniform r=8 on q,v: 6 layers x 2 sites x 8 x (384 + 384)
    assert 0.95 * 73_728 <= a.budget.used <= 73_728


def test_plan_entry_point_loads_and_is_reproducible_across_loads() -> None:
    a = heterolora.plan("minilm", builtin_sample()[:32], proxy="rank_energy", device="cpu", **FAST)
    b = heterolora.plan("minilm", builtin_sample()[:32], proxy="rank_energy", device="cpu", **FAST)
    assert a.fingerprint() == b.fingerprint()
    assert a.model.id == "minilm" and a.peft.modules_to_save == ["classifier"]
    assert {m.type for m in a.modules} == {"q", "k", "v", "o", "up", "down"}


def test_head_warmup_changes_scores_but_not_the_model(minilm) -> None:
    loaded, batches = minilm
    head = loaded.model.classifier.weight.clone()
    cold = compute_plan(loaded.model, batches[:2], AllocationConfig(**FAST))
    warm = compute_plan(loaded.model, batches[:2], AllocationConfig(head_warmup_steps=5, **FAST))
    assert [m.score for m in cold.modules] != [m.score for m in warm.modules]
    assert (loaded.model.classifier.weight == head).all()


def test_missing_labels_are_reported_with_the_field() -> None:
    rows = [{"text": "a b c", "text_pair": "c d"}, {"text": "x", "label": 1}]
    with pytest.raises(DataError, match="this proxy needs labels") as err:
        heterolora.plan("minilm", rows, device="cpu", **FAST)
    assert err.value.field == "samples.0.label"
    plan = heterolora.plan("minilm", rows, proxy="synflow", device="cpu", **FAST)  # data-free: fine
    assert plan.budget.used > 0


def test_string_labels_infer_the_number_of_classes() -> None:
    rows = [{"text": f"sentence {i}", "label": ["pos", "neg", "neutral"][i % 3]} for i in range(12)]
    plan = heterolora.plan("minilm", rows, device="cpu", **FAST)
    assert plan.budget.used > 0


def test_long_inputs_are_cut_at_the_models_position_table(minilm) -> None:
    from conftest import tiny_model

    from heterolora.loading import LoadedModel
    from heterolora.planner import prepare

    tiny = LoadedModel(tiny_model("bert"), minilm[0].tokenizer, "tiny", None)  # 64 positions
    rows = [{"text": "word " * 300, "label": i % 2} for i in range(4)]
    _, batches = prepare("tiny", rows, AllocationConfig(max_length=512), loaded=tiny)
    assert batches[0]["input_ids"].shape[1] == 64
    for b in batches:  # the tiny model's vocabulary has 128 ids
        b["input_ids"] = b["input_ids"] % 128
    plan = compute_plan(tiny.model, batches, AllocationConfig(budget={"trainable_params": 2000}))
    assert plan.budget.used > 0
