"""The benchmark's mean-pooling head on a tiny BERT: padding is ignored, the engine sees one head."""

from __future__ import annotations

import torch
from conftest import random_batches, tiny_model

from benchmarks.quality.head import MeanPoolClassifier
from heterolora.search_space import discover, head_modules


def test_mean_pooling_ignores_padding_and_gives_a_loss() -> None:
    model = MeanPoolClassifier(tiny_model("bert")).eval()
    batch = random_batches(n=1)[0]
    out = model(**batch)
    assert out.logits.shape == (4, 2) and torch.isfinite(out.loss)
    padded = {k: v.clone() for k, v in batch.items()}
    padded["input_ids"][0, -3:] = 7  # change only the masked tokens of row 0
    assert torch.allclose(model(**padded).logits, out.logits, atol=1e-6)


def test_head_is_the_classifier_only_and_sites_are_unchanged() -> None:
    base = tiny_model("bert")
    sites = [c.name for c in discover(base)]
    model = MeanPoolClassifier(base)
    assert head_modules(model) == ["classifier"]
    assert [c.name for c in discover(model)] == sites and len(sites) == 12
    assert sum(p.numel() for p in model.classifier.parameters()) == 32 * 2 + 2


def test_inputs_embeds_path_used_by_synflow() -> None:
    model = MeanPoolClassifier(tiny_model("bert")).eval()
    embeds = torch.ones(1, 5, 32)
    assert model(inputs_embeds=embeds).logits.shape == (1, 2)
    assert model.get_input_embeddings() is model.bert.embeddings.word_embeddings
