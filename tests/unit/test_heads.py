"""Heads that follow the checkpoint (heterolora/heads.py): a sentence-transformers checkpoint's seq-cls
model pools as the checkpoint declares and trains only `classifier`; other checkpoints keep their head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from heterolora import AllocationConfig, apply_plan, compute_plan
from heterolora.config import POOLED_HEAD
from heterolora.heads import PooledSequenceClassifier, declared_pooling, folder_reader, pool
from heterolora.loading import embedded_model_path, load_model
from heterolora.samples import builtin_sample, make_batches


def _checkpoint(tmp_path: Path, modules: list[dict] | None, pooling: dict | None) -> Path:
    tmp_path.mkdir()
    if modules is not None:
        (tmp_path / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return tmp_path


ST_MODULES = [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
              {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]  # fmt: skip


def test_declared_pooling_reads_the_checkpoint(tmp_path: Path) -> None:
    assert declared_pooling(folder_reader(embedded_model_path())) == "mean"  # all-MiniLM-L6-v2
    assert declared_pooling(folder_reader(tmp_path)) is None  # a plain transformers checkpoint
    cls = _checkpoint(tmp_path / "a", ST_MODULES, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    assert declared_pooling(folder_reader(cls)) == "cls"
    both = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}
    assert declared_pooling(folder_reader(_checkpoint(tmp_path / "b", ST_MODULES, both))) is None  # not one mode
    sqrt = {"pooling_mode_mean_sqrt_len_tokens": True}
    assert declared_pooling(folder_reader(_checkpoint(tmp_path / "c", ST_MODULES, sqrt))) is None  # not implemented
    assert declared_pooling(folder_reader(_checkpoint(tmp_path / "d", ST_MODULES[:1], None))) is None  # no Pooling
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "modules.json").write_text("{not json")
    assert declared_pooling(folder_reader(tmp_path / "e")) is None


def test_pool_leaves_padding_out() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 4.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 6.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="pooling mode"):
        PooledSequenceClassifier(torch.nn.Linear(1, 1), "sqrt")  # type: ignore[arg-type]


def test_minilm_plan_trains_only_the_classifier_over_mean_pooling() -> None:
    loaded = load_model("minilm", "seq-cls")
    model = loaded.model
    assert type(model).__name__ == POOLED_HEAD and model.pooling == "mean"
    batches = make_batches(builtin_sample()[:16], loaded.tokenizer, task="seq-cls", batch_size=8, num_batches=2,
                           max_length=48, seed=0, labels={0: 0, 1: 1})  # fmt: skip
    plan = compute_plan(model, batches, AllocationConfig(proxy="constant", budget={"like": {"r": 2}}))
    assert plan.peft.modules_to_save == ["classifier"] and plan.model.architecture == POOLED_HEAD
    peft_model = apply_plan(model, plan)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable and all(".classifier." in n for n in trainable)
    assert sum(p.numel() for n, p in peft_model.named_parameters() if n in trainable) == 384 * 2 + 2
    # the logits are the classifier over the masked token mean of the encoder's last states
    peft_model.eval()
    batch = {k: v for k, v in batches[0].items() if k != "labels"}
    with torch.no_grad():
        logits = peft_model(**batch).logits
        hidden = peft_model.base_model.model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        by_hand = peft_model.base_model.model.classifier((hidden * mask).sum(1) / mask.sum(1))
    torch.testing.assert_close(logits, by_hand)
    assert peft_model.base_model.model.bert.pooler is None  # BERT's leftover pooler is gone


def test_other_checkpoints_keep_their_head(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    from heterolora.search_space import head_modules

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefgh"]))
    model = load_model(str(tmp_path), "seq-cls").model
    assert type(model).__name__ == "BertForSequenceClassification"
    assert head_modules(model) == ["classifier", "bert.pooler"]
