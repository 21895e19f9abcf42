"""Jobs: submit with idempotency, status, cancel, wait. One base class holds the semantics; the
Celery queue and the embedded (in-process) queue differ only in how a job runs and reports.

Every job belongs to the caller that created it (its tenant, a hash of the API key): another
key's job is a 404, and de-duplication and Idempotency-Keys are per tenant. Key names and the
record format live in service.jobs.records.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from heterolora.schemas import AllocateRequest, ErrorInfo, JobStatus, Progress
from service.errors import Conflict, JobNotFound, TooManyRequests, Unavailable
from service.jobs.artifacts import ArtifactStore
from service.jobs.records import (
    ANONYMOUS,
    JobRecord,
    RunState,
    cancel_key,
    idempotency_key,
    job_key,
    now,
    rate_key,
    request_key,
)
from service.jobs.store import Store

RETRYABLE_STATES = ("failed", "cancelled")  # an identical request after these starts afresh
RATE_WINDOW_S = 60
WAIT_POLL_FIRST_S, WAIT_POLL_MAX_S = 0.05, 0.5


@dataclass(frozen=True)
class Caller:
    """Who sends a request: `tenant` owns jobs (a hash, never the key); `name` goes into logs."""

    name: str = ANONYMOUS
    tenant: str = ANONYMOUS


@dataclass(frozen=True)
class Limits:
    max_queued_jobs: int = 100
    rate_limit_per_minute: int = 0  # 0: off


def internal_error(exc: BaseException) -> dict[str, str]:
    """An unexpected failure as clients see it: type and first line, no traceback."""
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}


class JobQueue(ABC):
    artifacts: ArtifactStore  # a job's init tensor file, set by each backend

    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.waiters = 0  # requests held by ?wait in this process (asyncio: no lock needed)

    # ---- what a backend provides -----------------------------------------------------------
    @abstractmethod
    def _start(self, job_id: str, request: AllocateRequest) -> None: ...

    @abstractmethod
    def _run_state(self, job_id: str, record: JobRecord) -> RunState: ...

    @abstractmethod
    def _revoke(self, job_id: str) -> None: ...

    @abstractmethod
    def readiness(self) -> dict[str, Any]:
        """Details for /readyz; raises Unavailable when jobs cannot run."""

    def queued(self) -> int:
        """Jobs waiting for a worker (the queue-depth limit and metric)."""
        return 0

    def close(self) -> None:
        return None

    # ---- the API's operations --------------------------------------------------------------
    def check_rate(self, caller: Caller) -> None:
        """Fixed one-minute windows per tenant; 429 with the seconds left in the window."""
        limit = self.limits.rate_limit_per_minute
        if not limit:
            return
        window, into = divmod(time.time(), RATE_WINDOW_S)
        count = self.store.incr(rate_key(caller.tenant, int(window)), "n", ttl_s=2 * RATE_WINDOW_S)
        if count > limit:
            raise TooManyRequests(
                f"more than {limit} submissions per minute for this API key",
                code="rate_limited",
                retry_after=max(1, math.ceil(RATE_WINDOW_S - into)),
            )

    def submit(self, request: AllocateRequest, key: str | None = None, caller: Caller = Caller()) -> JobStatus:
        """The job for `request`: the running or finished one for an identical request, else a new one."""
        fingerprint = request.fingerprint()
        idem = idempotency_key(caller.tenant, key) if key else None
        owner = self.store.get(idem) if idem else None
        if owner:
            found = self._owned(owner, fingerprint, caller)
            if found is not None:
                return found
        job_id = self._job_for(fingerprint, request, caller)
        if idem:
            value = f"{job_id} {fingerprint}"
            # Take the key if it is free, or if it still names the job that expired just now.
            claimed = self.store.swap(idem, owner, value) if owner else self.store.put(idem, value, only_new=True)
            if not claimed:
                return self.submit(request, key, caller)  # a concurrent call claimed the key first: use its job
        return self.get(job_id, caller)

    def status(self, job_id: str, caller: Caller = Caller()) -> JobStatus | None:
        raw = self.store.get(job_key(job_id))
        if raw is None:
            return None
        record = JobRecord.loads(raw)
        if record.owner != caller.tenant:
            return None  # another key's job does not exist for this caller
        run = self._run_state(job_id, record)
        if run.status not in ("succeeded", "failed"):
            cancelled_at = self.store.get(cancel_key(job_id))
            if cancelled_at:
                run.status, run.phase = "cancelled", "cancelled"
                run.finished_at = run.finished_at or cancelled_at
        return JobStatus(
            job_id=job_id,
            status=run.status,
            status_url=f"/jobs/{job_id}",
            progress=Progress(fraction=1.0 if run.status == "succeeded" else run.fraction, phase=run.phase),
            created_at=record.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            plan=run.plan,
            error=ErrorInfo(**run.error) if run.error else None,
        )

    def get(self, job_id: str, caller: Caller = Caller()) -> JobStatus:
        job = self.status(job_id, caller)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} (unknown, or expired after the result TTL)", field="job_id")
        return job

    def cancel(self, job_id: str, caller: Caller = Caller()) -> JobStatus:
        job = self.get(job_id, caller)
        if job.status in ("succeeded", "failed"):
            raise Conflict(f"job {job_id} already {job.status}", code="job_finished")
        if job.status != "cancelled":
            self.store.put(cancel_key(job_id), now())
            self._revoke(job_id)
        return self.get(job_id, caller)

    async def wait(self, job_id: str, seconds: float, caller: Caller = Caller()) -> JobStatus:
        """Poll the job store until the job ends or `seconds` pass, without holding a thread."""
        deadline = time.monotonic() + seconds
        delay = WAIT_POLL_FIRST_S
        job = await run_in_threadpool(self.get, job_id, caller)
        while not job.done and time.monotonic() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, WAIT_POLL_MAX_S)
            job = await run_in_threadpool(self.get, job_id, caller)
        return job

    # ---- idempotency -----------------------------------------------------------------------
    def _owned(self, owner: str, fingerprint: str, caller: Caller) -> JobStatus | None:
        job_id, _, owner_fingerprint = owner.partition(" ")
        if owner_fingerprint != fingerprint:
            raise Conflict(
                "Idempotency-Key was already used with a different request body", code="idempotency_key_reused"
            )
        return self.status(job_id, caller)

    def _job_for(self, fingerprint: str, request: AllocateRequest, caller: Caller) -> str:
        key = request_key(caller.tenant, fingerprint)
        while True:
            current = self.store.get(key)  # "" marks a mapping released by a failed enqueue
            if current:
                job = self.status(current, caller)
                if job is not None and job.status not in RETRYABLE_STATES:
                    return current
            if self.queued() >= self.limits.max_queued_jobs:
                raise TooManyRequests(
                    f"{self.limits.max_queued_jobs} jobs are already waiting for a worker; try again later",
                    code="queue_full",
                )
            # The record exists before the mapping points at it, so a concurrent identical
            # request never sees a mapping without a record (and never replaces a live job).
            job_id = uuid.uuid4().hex
            record = JobRecord(job_id=job_id, created_at=now(), owner=caller.tenant, key_name=caller.name)
            self.store.put(job_key(job_id), record.dumps())
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
