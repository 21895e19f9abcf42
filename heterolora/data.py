"""Samples in, tokenised scoring batches out. No downloads."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from heterolora.config import MAX_TEXT_CHARS
from heterolora.errors import DataError

Sample = dict[str, Any]  # {"text": str, "text_pair": str | None, "label": int | str | None}


def builtin_sample() -> list[Sample]:
    """128 labelled sentence pairs (paraphrase 1 / not 0) written for this project."""
    text = resources.files("heterolora").joinpath("data/sample_pairs.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_samples(path: str | Path) -> list[Sample]:
    """JSONL, or TSV with a header naming `text`, `text_pair`, `label` (GLUE's sentence1/sentence2 too)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist", field="data")
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path.name} line {i + 1}: not JSON ({exc.msg})", field="data") from exc
        return rows
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        rename = {"sentence1": "text", "sentence": "text", "sentence2": "text_pair"}
        return [{rename.get(k, k): v for k, v in row.items() if k != "idx"} for row in reader]


def normalize_samples(samples: Any) -> list[Sample]:
    """Accept a list of dicts, a pandas DataFrame or a datasets.Dataset (duck-typed)."""
    if hasattr(samples, "to_dict") and hasattr(samples, "columns"):  # pandas
        samples = samples.to_dict(orient="records")
    elif hasattr(samples, "column_names") and hasattr(samples, "to_list"):  # datasets
        samples = samples.to_list()
    if not isinstance(samples, Iterable) or isinstance(samples, str | bytes | Mapping):
        raise DataError("samples must be a list of {text, text_pair?, label?} objects", field="samples")
    out: list[Sample] = []
    for i, row in enumerate(samples):
        if not isinstance(row, Mapping) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataError(f"samples[{i}] needs a non-empty string 'text'", field=f"samples.{i}.text")
        pair = row.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise DataError(f"samples[{i}].text_pair must be a string", field=f"samples.{i}.text_pair")
        if len(row["text"]) + len(pair or "") > MAX_TEXT_CHARS:
            raise DataError(f"samples[{i}] is longer than {MAX_TEXT_CHARS} characters", field=f"samples.{i}.text")
        label = row.get("label")
        if label == "":
            label = None
        out.append({"text": row["text"], "text_pair": pair or None, "label": label})
    if not out:
        raise DataError("the data sample is empty", field="samples")
    return out


def label_map(samples: list[Sample], required: bool) -> dict[Any, int]:
    """Map labels to ids: integer-like labels keep their value, others are sorted by name."""
    missing = [i for i, s in enumerate(samples) if s["label"] is None]
    if missing and required:
        raise DataError(
            f"{len(missing)} samples have no label (first: samples[{missing[0]}]); this proxy needs labels",
            field=f"samples.{missing[0]}.label",
        )
    labels = {s["label"] for s in samples if s["label"] is not None}
    if not labels:
        return {}
    try:
        ints = {int(str(x)) for x in labels}
        if all(str(int(str(x))) == str(x) for x in labels) and min(ints) >= 0:
            return {x: int(str(x)) for x in labels}
    except ValueError:
        pass
    return {x: i for i, x in enumerate(sorted(labels, key=str))}


def num_labels_of(mapping: dict[Any, int]) -> int:
    return max(2, max(mapping.values(), default=0) + 1)


def make_batches(
    samples: list[Sample],
    tokenizer: Any,
    *,
    task: str,
    batch_size: int,
    num_batches: int,
    max_length: int,
    seed: int,
    labels: dict[Any, int] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Up to `num_batches` dynamically padded batches from a seeded shuffle of the sample."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    order = order[: batch_size * num_batches]
    batches = []
    for start in range(0, len(order), batch_size):
        rows = [samples[i] for i in order[start : start + batch_size]]
        texts = [r["text"] for r in rows]
        pairs = [r["text_pair"] for r in rows]
        has_pairs = task == "seq-cls" and any(p is not None for p in pairs)
        enc = tokenizer(
            texts,
            [p or "" for p in pairs] if has_pairs else None,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        batch = dict(enc)
        if task == "causal-lm":
            target = enc["input_ids"].clone()
            target[enc["attention_mask"] == 0] = -100
            batch["labels"] = target
        elif labels and all(r["label"] is not None for r in rows):
            batch["labels"] = torch.tensor([labels[r["label"]] for r in rows])
        batches.append(batch)
    return batches
