"""GLUE data for the quality benchmark (sentence pairs: MRPC, RTE; single sentences: SST-2): read,
split, tokenise once, length-bucketed batches."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heterolora.samples import read_samples

TASKS = ("mrpc", "rte", "sst2")
HF_NAMES = {"sst2": ("sentence", None)}  # HF glue columns of a single-sentence task


@dataclass(frozen=True)
class Encoded:
    """A tokenised split: one id list per example, plus integer labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def load_rows(data_dir: str | Path, task: str, split: str) -> list[dict[str, Any]]:
    """Rows of `<data_dir>/<task>/<split>.tsv`, or of HF `datasets` ('glue', task) when the path is 'hf'."""
    if str(data_dir) == "hf":
        from datasets import load_dataset

        ds = load_dataset("glue", task, split=split)
        first, second = HF_NAMES.get(task, ("sentence1", "sentence2"))
        return [{"text": r[first], "text_pair": r[second] if second else None, "label": int(r["label"])} for r in ds]
    rows = read_samples(Path(data_dir) / task / f"{split}.tsv")
    return [{"text": r["text"], "text_pair": r.get("text_pair"), "label": int(r["label"])} for r in rows]


def holdout_split(rows: list[dict[str, Any]], share: float = 1 / 3, seed: int = 1234) -> tuple[list, list]:
    """(fit, held-out) from a seeded permutation of the train rows: the pilot never sees validation."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = round(len(rows) * share)
    return [rows[i] for i in order[cut:]], [rows[i] for i in order[:cut]]


def subset(rows: list[dict[str, Any]], limit: int | None, seed: int = 99) -> list[dict[str, Any]]:
    if limit is None or limit >= len(rows):
        return rows
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[:limit])]


def encode(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> Encoded:
    pairs = [r["text_pair"] for r in rows] if any(r["text_pair"] is not None for r in rows) else None
    enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=max_length)
    types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
    return Encoded(list(enc["input_ids"]), list(types), [int(r["label"]) for r in rows])


def bucketed_order(lengths: list[int], batch_size: int, seed: int, chunk: int = 20) -> list[list[int]]:
    """Shuffle, sort by length inside chunks of `chunk` batches, cut into batches, shuffle the batches:
    nearly no padding, and still a random batch order every epoch."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch_size * chunk
    for start in range(0, len(order), step):
        part = sorted(order[start : start + step], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(data: Encoded, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(data.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    labels = torch.tensor([data.labels[i] for i in idx])
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


def eval_batches(data: Encoded, batch_size: int) -> list[list[int]]:
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    return [order[j : j + batch_size] for j in range(0, len(order), batch_size)]
