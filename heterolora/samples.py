"""Samples in, tokenised scoring batches out: every sample check, the label classes and the
pandas / datasets conversion live here, once. Import-light (torch loads in `make_batches`), so the
wire schemas and the SDK use the same checks. No downloads."""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable, Mapping, Sized
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heterolora.config import LABEL_PROXIES, MAX_CLASSES, MAX_LABEL_CHARS, MAX_TEXT_CHARS, AllocationConfig
from heterolora.errors import DataError

if TYPE_CHECKING:
    import torch

Sample = dict[str, Any]  # {"text": str, "text_pair": str | None, "label": int | str | None}
Label = int | str
_INTEGER = re.compile(r"-?\d+")


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


def sample_rows(samples: Any) -> list[Sample]:
    """A list of dicts, a pandas DataFrame or a datasets.Dataset (duck-typed) -> JSON-ready rows
    holding only text, text_pair and label (numpy scalars as Python values, NaN cells dropped)."""
    if hasattr(samples, "to_dict") and hasattr(samples, "columns"):  # pandas
        samples = samples.to_dict(orient="records")
    elif hasattr(samples, "column_names") and hasattr(samples, "to_list"):  # datasets
        samples = samples.to_list()
    if not isinstance(samples, Iterable) or isinstance(samples, str | bytes | Mapping):
        raise DataError("samples must be a list of {text, text_pair?, label?} objects", field="samples")
    rows = []
    for i, row in enumerate(samples):
        if not isinstance(row, Mapping):
            raise DataError(f"samples[{i}] must be an object with a 'text'", field=f"samples.{i}")
        out = {k: _plain(row.get(k)) for k in ("text", "text_pair", "label")}
        rows.append({k: v for k, v in out.items() if v is not None})
    return rows


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; pandas' NaN for a missing cell -> None; 2.0 -> 2."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return None if value != value else int(value) if value.is_integer() else value
    return value


def check_text(i: int, text: Any, text_pair: Any, task: str | None = None) -> None:
    """The checks every sample passes, in the API's schema and in the library alike."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"samples[{i}] needs a non-empty string 'text'", field=f"samples.{i}.text")
    if text_pair is not None and not isinstance(text_pair, str):
        raise DataError(f"samples[{i}].text_pair must be a string", field=f"samples.{i}.text_pair")
    if len(text) + len(text_pair or "") > MAX_TEXT_CHARS:
        raise DataError(
            f"samples[{i}] is longer than {MAX_TEXT_CHARS} characters (text + text_pair)", field=f"samples.{i}.text"
        )
    if task == "causal-lm" and text_pair:
        raise DataError(
            f"samples[{i}] has a text_pair, which causal-lm cannot use: join it into 'text'",
            field=f"samples.{i}.text_pair",
        )


def normalize_samples(samples: Any, task: str | None = None) -> list[Sample]:
    """Checked rows {text, text_pair, label} from a list of dicts, a DataFrame or a Dataset."""
    out: list[Sample] = []
    for i, row in enumerate(sample_rows(samples)):
        text, pair, label = row.get("text"), row.get("text_pair") or None, row.get("label")
        check_text(i, text, pair, task)
        if label == "":
            label = None
        if label is not None and (isinstance(label, bool) or not isinstance(label, int | str)):
            raise DataError(f"samples[{i}].label must be an integer or a string", field=f"samples.{i}.label")
        out.append({"text": text, "text_pair": pair, "label": label})
    if not out:
        raise DataError("the data sample is empty", field="samples")
    return out


def class_names(labels: list[Label | None], *, required: bool) -> list[Label]:
    """The classes of a sample's labels, sorted: numbers (and numeric strings) by value, other
    names alphabetically. Class i is label id i, so a label's value never sizes the head: labels
    {0, 3000000} are two classes. At most MAX_CLASSES; 1 and "1" together are rejected."""
    missing = [i for i, x in enumerate(labels) if x is None or x == ""]
    if missing and required:
        raise DataError(
            f"{len(missing)} samples have no label (first: samples[{missing[0]}]); this proxy needs labels",
            field=f"samples.{missing[0]}.label",
        )
    present = [(i, x) for i, x in enumerate(labels) if x is not None and x != ""]
    long = next((i for i, x in present if len(str(x)) > MAX_LABEL_CHARS), None)
    if long is not None:
        raise DataError(
            f"samples[{long}].label has {len(str(labels[long]))} characters; a label has at most {MAX_LABEL_CHARS}",
            field=f"samples.{long}.label",
        )
    kinds = {type(x) for _, x in present}
    if len(kinds) > 1:
        first = next(i for i, x in present if type(x) is not type(present[0][1]))
        raise DataError(
            f"labels mix numbers and strings (samples[{first}].label is {labels[first]!r}); use one type",
            field=f"samples.{first}.label",
        )
    classes = sorted({x for _, x in present}, key=_class_order)
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{len(classes)} label classes; at most {MAX_CLASSES} are supported", field="samples")
    return classes


def _class_order(label: Label) -> tuple[int, int, str]:
    if isinstance(label, int):
        return (0, label, "")
    return (0, int(label), label) if _INTEGER.fullmatch(label) else (1, 0, label)


def label_map(samples: list[Sample], required: bool) -> dict[Label, int]:
    """Label -> id 0..n-1, in the order of `class_names`."""
    return {name: i for i, name in enumerate(class_names([s["label"] for s in samples], required=required))}


def num_labels_of(classes: Sized) -> int:
    """Outputs of the classification head: one per class (a list or a label map), at least two."""
    return max(2, len(classes))


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
    import torch

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


def checked_samples(samples: Any, config: AllocationConfig) -> tuple[list[Sample], list[int | str]]:
    """Checked rows (None: the built-in sample) and, for seq-cls, the sorted label classes (label
    id i is class i)."""
    rows = normalize_samples(builtin_sample() if samples is None else samples, task=config.task)
    if config.task != "seq-cls":
        return rows, []
    return rows, class_names([r["label"] for r in rows], required=config.proxy in LABEL_PROXIES)


def scoring_batches(
    rows: list[Sample], classes: list[int | str], tokenizer: Any, config: AllocationConfig, max_length: int
) -> list[dict[str, torch.Tensor]]:
    """The config's scoring batches from checked rows, labels numbered by `classes`."""
    return make_batches(
        rows,
        tokenizer,
        task=config.task,
        batch_size=config.batch_size,
        num_batches=config.num_batches,
        max_length=max_length,
        seed=config.seed,
        labels={name: i for i, name in enumerate(classes)},
    )
