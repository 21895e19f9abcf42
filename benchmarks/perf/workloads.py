"""What the performance benchmark plans on, built the same way in the parent and in the fresh
processes of the memory section: the embedded MiniLM on MRPC rows (tokenised by the library), or a
random-weight LLaMA of a given depth on random token batches (compute-bound, no tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from heterolora.config import AllocationConfig

DATA_ROWS = 512  # enough for K = 64 batches of 8
Batches = list[dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Spec:
    """A workload, as plain values (it travels to child processes as JSON)."""

    model: str  # "minilm" or "llama"
    num_batches: int
    batch_size: int = 8
    max_length: int = 128  # MiniLM: token limit per pair (MRPC pairs are 40-100 tokens)
    seq_len: int = 64  # LLaMA: tokens per row
    layers: int = 4  # LLaMA depth
    hidden: int = 256  # LLaMA width; 256 with a 4x MLP makes the linear layers dominate
    proxy: str = "grad_norm"
    data: str = ""  # MiniLM: a TSV/JSONL of pairs (GLUE MRPC train.tsv); "" = the built-in sample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config(self, **over: Any) -> AllocationConfig:
        base = {
            "proxy": self.proxy,
            "num_batches": self.num_batches,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
        }
        return AllocationConfig(**(base | over))


@dataclass
class Workload:
    """A loaded model and how to get its K scoring batches. `build` is part of what planning costs
    (tokenising for MiniLM), so every timed plan calls it."""

    spec: Spec
    model: nn.Module
    build: Callable[[AllocationConfig], Batches]


def sample_rows(data: str) -> list[dict[str, Any]]:
    """The first DATA_ROWS rows of `data`; the built-in 128 pairs when it is "" or missing."""
    from heterolora.samples import builtin_sample, read_samples

    if not data or not Path(data).is_file():
        return builtin_sample()
    return read_samples(data)[:DATA_ROWS]


def load(spec: Spec) -> Workload:
    return _minilm(spec) if spec.model == "minilm" else _llama(spec)


def _minilm(spec: Spec) -> Workload:
    from heterolora.planner import prepare

    rows = sample_rows(spec.data)
    loaded, _ = prepare("minilm", rows[:8], spec.config(num_batches=1), device="cpu")

    def build(config: AllocationConfig) -> Batches:
        return prepare("minilm", rows, config, device="cpu", loaded=loaded)[1]

    return Workload(spec, loaded.model, build)


def llama_model(layers: int, hidden: int, seed: int = 0) -> nn.Module:
    """A random LlamaForSequenceClassification; vocabulary kept small so embeddings stay cheap."""
    import transformers as T

    cfg = T.LlamaConfig(
        vocab_size=1024,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=512,
        pad_token_id=0,
        num_labels=2,
    )
    torch.manual_seed(seed)
    return T.LlamaForSequenceClassification(cfg).eval()


def random_batches(count: int, batch_size: int, seq_len: int, seed: int = 0) -> Batches:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(3, 1024, (batch_size, seq_len), generator=g)
        labels = torch.randint(0, 2, (batch_size,), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def _llama(spec: Spec) -> Workload:
    model = llama_model(spec.layers, spec.hidden)
    pool = random_batches(spec.num_batches, spec.batch_size, spec.seq_len)

    def build(config: AllocationConfig) -> Batches:
        return pool[: config.num_batches]

    return Workload(spec, model, build)
