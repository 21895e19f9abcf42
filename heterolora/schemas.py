"""The wire contract shared by the service, the worker and the SDK. Import-light: no torch.

`AllocateRequest` extends `AllocationConfig`, so every planning option, its description and its
validators exist once; the request only adds the model and the samples.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from heterolora.config import LABEL_PROXIES, MAX_LABEL_CHARS, MAX_TEXT_CHARS, AllocationConfig, WeightDtype
from heterolora.plans import Plan
from heterolora.samples import check_text, class_names, sample_rows

__all__ = ["AllocateRequest", "ErrorBody", "ErrorInfo", "JobStatus", "Progress", "SampleIn", "sample_rows"]

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
    "num_batches": 4,
    "batch_size": 8,
}


class SampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The bounds are declared here for the JSON schema; heterolora.samples.check_text, run by
    # AllocateRequest, is the one full check (also the total of text + text_pair).
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S", description="Input text, not blank.")
    text_pair: str | None = Field(default=None, max_length=MAX_TEXT_CHARS, description="Second text of a pair.")
    # The schema states the string bound; class_names checks it (and a number's digits) with a 422
    # naming samples.N.label, instead of pydantic's union error.
    label: int | Annotated[str, WithJsonSchema({"type": "string", "maxLength": MAX_LABEL_CHARS})] | None = Field(
        default=None, description="Class name (seq-cls); see docs/plan-format.md."
    )


class AllocateRequest(AllocationConfig):
    """POST /allocate body: the model, a data sample and the planning options."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [_EXAMPLE]})

    model_id: str = Field(
        min_length=1, max_length=512, description="Hub id, 'minilm', or a folder under HETEROLORA_MODEL_DIRS."
    )
    samples: list[SampleIn] = Field(min_length=1, description="Scoring sample: {text, text_pair?, label?} rows.")
    dtype: WeightDtype | None = Field(
        default=None,
        description="The weights' dtype while scoring (bfloat16 halves a float32 model's memory); "
        "default: the worker's HETEROLORA_DTYPE. Gradient sketches accumulate in float32 either way.",
    )

    @model_validator(mode="after")
    def _samples_fit_the_task(self) -> AllocateRequest:
        """The library's own sample checks (heterolora.samples), so bad input is a 422 here
        instead of a failed job later."""
        for i, s in enumerate(self.samples):
            check_text(i, s.text, s.text_pair, self.task)
        if self.task == "seq-cls":
            class_names([s.label for s in self.samples], required=self.proxy in LABEL_PROXIES)
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

    @model_validator(mode="after")
    def _plan_knows_its_job(self) -> JobStatus:
        """The plan carries its job id (Plan.job_id), so a tracking tool can record where it came from."""
        if self.plan is not None:
            self.plan.job_id = self.job_id
        return self

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATES
