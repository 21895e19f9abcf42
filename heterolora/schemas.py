"""The wire contract shared by the service, the worker and the SDK. Import-light: no torch.

`AllocateRequest` extends `AllocationConfig`, so every planning option, its description and its
validators exist once; the request only adds the model and the samples.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heterolora.config import LABEL_PROXIES, MAX_TEXT_CHARS, AllocationConfig
from heterolora.errors import DataError
from heterolora.plans import Plan

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

_EXAMPLE = {
    "model_id": "minilm",
    "task": "seq-cls",
    "samples": [
        {"text": "A man is playing a guitar.", "text_pair": "Someone plays an instrument.", "label": 1},
        {"text": "The cat sleeps.", "text_pair": "Stocks fell sharply today.", "label": 0},
    ],
    "budget": {"trainable_params": 100000},
    "proxy": "grad_norm",
    "num_batches": 4,
    "batch_size": 8,
}


class SampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="Input text.")
    text_pair: str | None = Field(default=None, max_length=MAX_TEXT_CHARS, description="Second text of a pair.")
    label: int | str | None = Field(default=None, description="Class label (seq-cls).")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be blank")
        return v


class AllocateRequest(AllocationConfig):
    """POST /allocate body: the model, a data sample and the planning options."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [_EXAMPLE]})

    model_id: str = Field(
        min_length=1, max_length=512, description="Hub id, 'minilm', or a folder under HETEROLORA_MODEL_DIRS."
    )
    samples: list[SampleIn] = Field(min_length=1, description="Scoring sample: {text, text_pair?, label?} rows.")

    @model_validator(mode="after")
    def _labels_present(self) -> AllocateRequest:
        if self.task == "seq-cls" and self.proxy in LABEL_PROXIES:
            missing = [i for i, s in enumerate(self.samples) if s.label is None or s.label == ""]
            if missing:
                raise DataError(
                    f"proxy {self.proxy!r} needs a label on every seq-cls sample; samples[{missing[0]}] has none",
                    field=f"samples.{missing[0]}.label",
                )
        return self

    def to_config(self) -> AllocationConfig:
        return AllocationConfig.model_validate(self.model_dump(include=set(AllocationConfig.model_fields)))

    def fingerprint(self) -> str:
        """Hash of everything that decides the plan: same model, samples, budget and options."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class Progress(BaseModel):
    fraction: float = Field(ge=0, le=1, description="0..1")
    phase: str = Field(description="loading model, scoring k/K, allocating, done")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable snake_case code, e.g. model_not_found.")
    message: str
    field: str | None = Field(default=None, description="Dotted path of the input to blame.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx body."""

    error: ErrorInfo


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    status_url: str
    progress: Progress = Field(default_factory=lambda: Progress(fraction=0.0, phase="queued"))
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    plan: Plan | None = None
    error: ErrorInfo | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATES


def sample_rows(samples: Any) -> list[dict[str, Any]]:
    """A list of dicts, a pandas DataFrame or a datasets.Dataset (duck-typed) -> JSON-ready rows
    holding only text, text_pair and label."""
    if hasattr(samples, "to_dict") and hasattr(samples, "columns"):  # pandas
        samples = samples.to_dict(orient="records")
    elif hasattr(samples, "column_names") and hasattr(samples, "to_list"):  # datasets
        samples = samples.to_list()
    rows = []
    for row in samples:
        out = {k: _plain(row.get(k)) for k in ("text", "text_pair", "label")}
        rows.append({k: v for k, v in out.items() if v is not None})
    return rows


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; pandas' NaN for a missing cell -> None."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return None if value != value else int(value) if value.is_integer() else value
    return value
