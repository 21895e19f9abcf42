"""What the API and the workers share: every Redis key, the job record format, and the Celery task
and queue names. Import-light (no Celery, no torch): both sides import it.

Keys (all expire; see the settings for how long):
    heterolora:job:{id}                     the job record (JSON, below)
    heterolora:cancel:{id}                  set when a client cancels the job
    heterolora:deliveries:{id}              hash: started (every delivery), open (deliveries that never ended)
    heterolora:lease:{id}                   held by the worker running the job, renewed while it runs (jobs/lease.py)
    heterolora:running                      hash: job id -> "token started_at" of every job a worker runs
    heterolora:request:{tenant}:{sha256}    identical request of one API key -> job id
    heterolora:idem:{sha256(tenant, key)}   Idempotency-Key of one API key -> "job_id fingerprint"
    heterolora:samples:{sha256}             one sample set, shared by every job that uses it
    heterolora:artifact:{id}                a job's init tensor file, or "file:<name>" in HETEROLORA_ARTIFACT_DIR
    heterolora:rate:{tenant}:{window}       submissions of one API key in one rate window
    heterolora:stats:counters               hash: job counters, exported by GET /metrics
    heterolora:stats:seconds:{name}         hash: a histogram of durations (bucket -> count, sum, count)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from heterolora.schemas import JobState

TASK_ALLOCATE = "heterolora.allocate"
QUEUE_GPU = "gpu"
PREFIX = "heterolora:"
ANONYMOUS = "anonymous"  # the tenant when the API runs without keys


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"{PREFIX}cancel:{job_id}"


def deliveries_key(job_id: str) -> str:
    return f"{PREFIX}deliveries:{job_id}"


def lease_key(job_id: str) -> str:
    return f"{PREFIX}lease:{job_id}"


RUNNING_KEY = f"{PREFIX}running"


def request_key(tenant: str, fingerprint: str) -> str:
    return f"{PREFIX}request:{tenant}:{fingerprint}"


def idempotency_key(tenant: str, key: str) -> str:
    return f"{PREFIX}idem:{digest(tenant, key)}"


def samples_key(samples_hash: str) -> str:
    return f"{PREFIX}samples:{samples_hash}"


def artifact_key(job_id: str) -> str:
    return f"{PREFIX}artifact:{job_id}"


def rate_key(tenant: str, window: int) -> str:
    return f"{PREFIX}rate:{tenant}:{window}"


STATS_COUNTERS = f"{PREFIX}stats:counters"


def seconds_key(name: str) -> str:
    return f"{PREFIX}stats:seconds:{name}"


@dataclass
class RunState:
    """How far a job got, in our own vocabulary."""

    status: JobState = "queued"
    fraction: float = 0.0
    phase: str = "queued"
    started_at: str | None = None
    finished_at: str | None = None
    plan: dict[str, Any] | None = None
    error: dict[str, Any] | None = field(default=None)


@dataclass
class JobRecord:
    """heterolora:job:{id}. `owner` is the tenant (a hash of the API key, never the key);
    `run` is filled only in single-machine mode (Celery keeps its own result record)."""

    job_id: str
    created_at: str
    owner: str = ANONYMOUS
    key_name: str = ANONYMOUS
    run: dict[str, Any] | None = None

    def dumps(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def loads(cls, raw: str) -> JobRecord:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def job_payload(request: dict[str, Any], samples_hash: str) -> dict[str, Any]:
    """The task message: the request without its samples, which wait in Redis under their hash."""
    return {"request": {k: v for k, v in request.items() if k != "samples"}, "samples": samples_hash}


class JobError(Exception):
    """A job failure as clients see it (a code from heterolora.error_codes). Its args are plain
    strings, so it survives the result backend's JSON round trip and is rebuilt as this class."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(code, message, field)
        self.code = code
        self.message = message
        self.field = field
