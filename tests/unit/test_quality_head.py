"""The benchmark's mean-pooling head (heterolora.heads) on a tiny BERT: padding is ignored, the engine sees one head."""

from __future__ import annotations

import torch
from conftest import random_batches, tiny_model

from benchmarks.quality.head import mean_head
from heterolora.search_space import discover, head_modules


def test_mean_pooling_ignores_padding_and_gives_a_loss() -> None:
    model = mean_head(tiny_model("bert")).eval()
    batch = random_batches(n=1)[0]
    out = model(**batch)
    assert out.logits.shape == (4, 2) and torch.isfinite(out.loss)
    padded = {k: v.clone() for k, v in batch.items()}
    padded["input_ids"][0, -3:] = 7  # change only the masked tokens of row 0
    assert torch.allclose(model(**padded).logits, out.logits, atol=1e-6)


def test_head_is_the_classifier_only_and_sites_are_unchanged() -> None:
    base = tiny_model("bert")
    sites = [c.name for c in discover(base)]
    model = mean_head(base)
    assert head_modules(model) == ["classifier"]
    assert [c.name for c in discover(model)] == sites and len(sites) == 12
    assert sum(p.numel() for p in model.classifier.parameters()) == 32 * 2 + 2


def test_inputs_embeds_path_used_by_synflow() -> None:
    model = mean_head(tiny_model("bert")).eval()
    embeds = torch.ones(1, 5, 32)
    assert model(inputs_embeds=embeds).logits.shape == (1, 2)
    assert model.get_input_embeddings() is model.bert.embeddings.word_embeddings


def test_arms_go_through_apply_plan_with_the_plan_head() -> None:
    """Uniform, random and planned arms are engine Plans applied by heterolora.apply_plan: the
    PeftModel carries its plan, and trains exactly the plan's LoRA and its modules_to_save head."""
    from benchmarks.quality.arms import ArmSpec, budget_limit, build_arm

    for name, head in (("uniform_all", ["classifier", "bert.pooler"]), ("random", ["classifier"])):
        model = tiny_model("bert") if name == "uniform_all" else mean_head(tiny_model("bert"))
        limit = budget_limit(model)
        peft_model, _, ranks = build_arm(ArmSpec(name), model, random_batches(n=2), seed=0)
        plan = peft_model.heterolora_plan
        assert plan.peft.modules_to_save == head and plan.ranks == ranks
        lora = sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" in n)
        assert lora == plan.budget.used <= limit
        if name == "uniform_all":
            assert set(ranks.values()) == {2} and len(ranks) == 12 and lora == limit  # r=2 on all 12 sites


def test_init_arms_build_their_init_for_the_rate_they_train_at() -> None:
    """The gradient init's step depends on the learning rate, so a rate sweep must rebuild the init
    at each rate: both init arms record the arm's rate, and apply_plan sees it (no LearningRateWarning)."""
    import warnings

    from benchmarks.quality.arms import ArmSpec, build_arm
    from heterolora.init.apply import LearningRateWarning

    for name in ("heterolora_init", "uniform_all_init"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", LearningRateWarning)
            peft_model, _, _ = build_arm(ArmSpec(name), tiny_model("bert"), random_batches(n=2), seed=0, lr=3e-4)
        assert peft_model.heterolora_plan.recommended_learning_rate == 3e-4


def test_dynamic_arms_differ_only_in_the_rank_every_site_gets() -> None:
    """Arm 6 (`dynamic`, every site at r = 8) and the exploratory `dynamic_wide` (r = 4): same budget
    of active parameters, each its own learning-rate family; at r = 4 the budget holds twice the sites."""
    from benchmarks.quality.arms import ArmSpec, budget_limit, build_arm, family_of, kind_of

    active = {}
    for name, rank in (("dynamic", 8), ("dynamic_wide", 4)):
        assert kind_of(name) == "dynamic" and family_of(name) == name
        model = tiny_model("bert")
        limit = budget_limit(model)
        peft_model, _, ranks = build_arm(ArmSpec(name), model, random_batches(n=2), seed=0)
        assert set(ranks.values()) == {rank} and len(ranks) == 12
        controller = peft_model.heterolora_dynamic
        assert controller.config.active_params == limit
        chosen = controller.reallocate()
        assert controller.active_params <= limit
        active[name] = len(chosen)
    assert active["dynamic_wide"] >= 2 * active["dynamic"] - 1
