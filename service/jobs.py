"""Jobs: submit with idempotency, status, cancel, wait. One base class holds the semantics; the
Celery queue and the embedded (in-process) queue differ only in how a job runs and reports.

Records live in a Store under heterolora:job:{id}; an unknown id therefore is a 404, never
Celery's PENDING. Identical requests share heterolora:request:{fingerprint} -> job id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from heterolora.schemas import AllocateRequest, ErrorInfo, JobState, JobStatus, Progress
from service.errors import Conflict, JobNotFound, Unavailable
from service.store import Store
from worker.app import cancel_key, job_key

RETRYABLE_STATES = ("failed", "cancelled")  # an identical request after these starts afresh


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def internal_error(exc: BaseException) -> dict[str, str]:
    """An unexpected failure as clients see it: type and first line, no traceback."""
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def request_key(fingerprint: str) -> str:
    return f"heterolora:request:{fingerprint}"


def idempotency_key(key: str) -> str:
    return "heterolora:idem:" + hashlib.sha256(key.encode()).hexdigest()


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


class JobQueue(ABC):
    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- what a backend provides -----------------------------------------------------------
    @abstractmethod
    def _start(self, job_id: str, request: AllocateRequest) -> None: ...

    @abstractmethod
    def _run_state(self, job_id: str, record: dict[str, Any]) -> RunState: ...

    @abstractmethod
    def _revoke(self, job_id: str) -> None: ...

    @abstractmethod
    def readiness(self) -> dict[str, Any]:
        """Details for /readyz; raises Unavailable when jobs cannot run."""

    def close(self) -> None:
        return None

    # ---- the API's operations --------------------------------------------------------------
    def submit(self, request: AllocateRequest, key: str | None = None) -> JobStatus:
        """The job for `request`: the running or finished one for an identical request, else a new one."""
        fingerprint = request.fingerprint()
        owner = self.store.get(idempotency_key(key)) if key else None
        if owner:
            found = self._owned(owner, fingerprint)
            if found is not None:
                return found
        job_id = self._job_for(fingerprint, request)
        if key:
            value = f"{job_id} {fingerprint}"
            # Take the key if it is free, or if it still names the job that expired just now.
            if owner:
                claimed = self.store.swap(idempotency_key(key), owner, value)
            else:
                claimed = self.store.put(idempotency_key(key), value, only_new=True)
            if not claimed:
                return self.submit(request, key)  # a concurrent call claimed the key first: use its job
        return self.get(job_id)

    def status(self, job_id: str) -> JobStatus | None:
        raw = self.store.get(job_key(job_id))
        if raw is None:
            return None
        record = json.loads(raw)
        run = self._run_state(job_id, record)
        if run.status not in ("succeeded", "failed") and self.store.get(cancel_key(job_id)):
            run.status, run.phase = "cancelled", "cancelled"
        return JobStatus(
            job_id=job_id,
            status=run.status,
            status_url=f"/jobs/{job_id}",
            progress=Progress(fraction=1.0 if run.status == "succeeded" else run.fraction, phase=run.phase),
            created_at=record["created_at"],
            started_at=run.started_at,
            finished_at=run.finished_at,
            plan=run.plan,
            error=ErrorInfo(**run.error) if run.error else None,
        )

    def cancel(self, job_id: str) -> JobStatus:
        job = self.get(job_id)
        if job.status in ("succeeded", "failed"):
            raise Conflict(f"job {job_id} already {job.status}", code="job_finished")
        self.store.put(cancel_key(job_id), now())
        self._revoke(job_id)
        return self.get(job_id)

    def wait(self, job_id: str, seconds: float) -> JobStatus:
        deadline = time.monotonic() + seconds
        delay = 0.05
        job = self.get(job_id)
        while not job.done and time.monotonic() < deadline:
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.5)
            job = self.get(job_id)
        return job

    # ---- idempotency -----------------------------------------------------------------------
    def _owned(self, owner: str, fingerprint: str) -> JobStatus | None:
        job_id, _, owner_fingerprint = owner.partition(" ")
        if owner_fingerprint != fingerprint:
            raise Conflict(
                "Idempotency-Key was already used with a different request body", code="idempotency_key_reused"
            )
        return self.status(job_id)

    def _job_for(self, fingerprint: str, request: AllocateRequest) -> str:
        key = request_key(fingerprint)
        while True:
            current = self.store.get(key)  # "" marks a mapping released by a failed enqueue
            if current:
                job = self.status(current)
                if job is not None and job.status not in RETRYABLE_STATES:
                    return current
            # The record exists before the mapping points at it, so a concurrent identical
            # request never sees a mapping without a record (and never replaces a live job).
            job_id = uuid.uuid4().hex
            self.store.put(job_key(job_id), json.dumps({"job_id": job_id, "created_at": now()}))
            if current is None:
                claimed = self.store.put(key, job_id, only_new=True)
            else:
                claimed = self.store.swap(key, current, job_id)
            if claimed:
                self._enqueue(job_id, key, request)
                return job_id
            self.store.delete(job_key(job_id))

    def _enqueue(self, job_id: str, key: str, request: AllocateRequest) -> None:
        try:
            self._start(job_id, request)
        except Exception:
            with contextlib.suppress(Unavailable):  # the original error is the one to report
                self.store.delete(job_key(job_id))
                self.store.swap(key, job_id, "")  # leave no mapping to a job that never ran
            raise

    def get(self, job_id: str) -> JobStatus:
        job = self.status(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} (unknown, or expired after the result TTL)", field="job_id")
        return job
