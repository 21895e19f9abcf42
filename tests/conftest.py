"""Shared fixtures: tiny random models of each supported architecture (built from configs, no
downloads) and the embedded MiniLM."""

from __future__ import annotations

import os

import pytest

# The service tests use devtools.stack (shared with the benchmarks); rewrite its asserts too
# (registered here, before any test module imports it).
pytest.register_assert_rewrite("devtools")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARCHS = ("bert", "roberta", "opt", "opt_prenorm", "llama", "gpt2")


def tiny_config(arch: str, layers: int = 2):
    """A 2-layer, hidden-32 config of `arch`; vocab 128 (the tests tokenise with random ids)."""
    import transformers as T

    common = {"vocab_size": 128, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if arch in ("bert", "roberta"):
        cls = T.BertConfig if arch == "bert" else T.RobertaConfig
        return cls(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **common,
        )
    if arch.startswith("opt"):
        return T.OPTConfig(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=2,
            ffn_dim=64,
            word_embed_proj_dim=32,
            max_position_embeddings=64,
            do_layer_norm_before=arch == "opt_prenorm",
            **common,
        )
    if arch == "llama":
        return T.LlamaConfig(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=64,
            **common,
        )
    if arch == "gpt2":
        return T.GPT2Config(n_embd=32, n_layer=layers, n_head=2, n_positions=64, **common)
    raise ValueError(arch)


def tiny_model(arch: str, task: str = "seq-cls", layers: int = 2, seed: int = 0):
    import torch
    import transformers as T

    torch.manual_seed(seed)
    cfg = tiny_config(arch, layers)
    cls = T.AutoModelForCausalLM if task == "causal-lm" else T.AutoModelForSequenceClassification
    return cls.from_config(cfg).eval()


def random_batches(n: int = 2, batch: int = 4, seq: int = 12, labels: int | None = 2, seed: int = 0):
    """Token-id batches for tiny models; `labels=None` gives causal-LM labels (the ids)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, 128, (batch, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[0, -3:] = 0  # one padded row
        b = {"input_ids": ids, "attention_mask": mask}
        if labels is None:
            lab = ids.clone()
            lab[mask == 0] = -100
            b["labels"] = lab
        else:
            b["labels"] = torch.randint(0, labels, (batch,), generator=g)
        out.append(b)
    return out


@pytest.fixture(scope="session")
def minilm():
    """The real embedded MiniLM with a 2-label head (deterministic head init) and its tokenizer."""
    from heterolora.config import AllocationConfig
    from heterolora.planner import prepare
    from heterolora.samples import builtin_sample

    loaded, batches = prepare("minilm", builtin_sample(), AllocationConfig(num_batches=4), device="cpu")
    return loaded, batches
