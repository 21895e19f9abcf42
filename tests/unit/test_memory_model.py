"""The memory model's LoRA-step term (benchmarks/perf/memory_model.py, `lora_step_extra`) against
what autograd really saves: the bytes of every tensor saved for backward (parameters excluded) in a
PEFT LoRA step in train mode, minus those of eval-mode scoring (no weight needs a gradient, the
input embeddings do). Tiny random models built from configs; counts, not timings."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from peft import LoraConfig, get_peft_model

from benchmarks.perf.memory_model import check_model, lora_step_extra
from heterolora.search_space import discover

BATCH, SEQ = 4, 32


def saved_bytes(model: torch.nn.Module, batch: dict[str, torch.Tensor], train: bool) -> int:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    model.train(train)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**batch)
    return sum(seen.values())


def tiny(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "bert":  # BERT keeps dropout 0.1 in attention and hidden states, as MiniLM does
        cfg = T.BertConfig(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=4, max_position_embeddings=64)  # fmt: skip
        return T.BertForSequenceClassification(cfg)
    cfg = T.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)  # fmt: skip
    return T.LlamaForCausalLM(cfg)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_lora_step_extra_matches_the_tensors_autograd_saves(arch: str) -> None:
    ids = torch.randint(1, 512, (BATCH, SEQ))
    batch = {"input_ids": ids, "labels": ids if arch == "llama" else torch.zeros(BATCH, dtype=torch.long)}
    scoring = tiny(arch)
    shape, targets = check_model(scoring), [c.name for c in discover(scoring)]
    for p in scoring.parameters():
        p.requires_grad_(False)
    scoring.get_input_embeddings().weight.requires_grad_(True)
    scored = saved_bytes(scoring, batch, train=False)
    lora = get_peft_model(tiny(arch), LoraConfig(r=2, target_modules=targets))
    stepped = saved_bytes(lora, batch, train=True)
    predicted = lora_step_extra(shape, BATCH * SEQ, SEQ)
    assert stepped > scored
    assert predicted == pytest.approx(stepped - scored, rel=0.2)
