"""Jobs on Celery workers through Redis. Sends by task name: this process never imports torch.

A task message carries the request without its samples; the sample set waits once in Redis
under its content hash (heterolora:samples:{sha256}), shared by every job that uses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime
from typing import Any

import kombu.exceptions
import redis
from celery.backends.redis import RedisBackend
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from heterolora.schemas import AllocateRequest
from service.errors import Unavailable
from service.jobs.artifacts import ArtifactStore
from service.jobs.celery_app import make_celery
from service.jobs.lease import Sweeper
from service.jobs.queue import JobQueue, Limits, internal_error
from service.jobs.records import QUEUE_GPU, TASK_ALLOCATE, JobError, JobRecord, RunState, job_payload, samples_key
from service.jobs.store import RedisStore, safe_url
from service.logs import event
from service.settings import Settings, WorkerSettings

BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.ConnectionError, redis.TimeoutError, ConnectionError)
WORKER_PING_S = 1.0


def run_state(state: str, info: Any, date_done: Any) -> RunState:
    """The one place Celery's states become ours: queued, running, succeeded, failed, cancelled."""
    finished = date_done.isoformat() if isinstance(date_done, datetime) else date_done
    if state in ("PENDING", "RECEIVED", "RETRY"):
        return RunState("queued")
    if state in ("STARTED", "PROGRESS"):
        meta = info if isinstance(info, dict) else {}
        return RunState("running", meta.get("fraction", 0.0), meta.get("phase", "starting"), meta.get("started_at"))
    if state == "SUCCESS":
        return RunState("succeeded", 1.0, "done", info.get("started_at"), finished, plan=info["plan"])
    if state == "REVOKED":
        return RunState("cancelled", 0.0, "cancelled", finished_at=finished)
    return RunState("failed", 0.0, "failed", finished_at=finished, error=failure(info))


def failure(exc: Any) -> dict[str, Any]:
    if isinstance(exc, JobError):
        return {"code": exc.code, "message": exc.message, "field": exc.field}
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return {"code": "timeout", "message": f"the job ran past its time limit ({exc})"}
    return internal_error(exc)


def samples_hash(request: AllocateRequest) -> tuple[str, str]:
    """(sha256, JSON) of the request's sample set."""
    raw = json.dumps(request.model_dump(mode="json")["samples"], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest(), raw


class PollingRedisBackend(RedisBackend):
    """The API's result backend. The API reads job states (get_task_meta) and never waits on a
    result, so it subscribes to nothing: Celery's own subscribes to each sent task's result
    channel, piling up subscriptions, and with Redis away a send then retries for about 20 s in
    a request thread and fails for good ("The Celery application must be restarted")."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None


class CeleryJobQueue(JobQueue):
    def __init__(self, redis_url: str, settings: Settings) -> None:
        limits = Limits(settings.max_queued_jobs, settings.rate_limit_per_minute)
        super().__init__(RedisStore(redis_url, settings.result_ttl_s, settings.redis_timeout_s), limits)
        self.url = redis_url
        self.celery = make_celery(WorkerSettings(redis_url=redis_url, result_ttl_s=settings.result_ttl_s))
        self.celery.conf.result_backend = f"{__name__}:PollingRedisBackend+{redis_url}"
        # No limit on the broker connection pool: a pool wait has no timeout in kombu, and a
        # broadcast with replies holds one connection while it asks for a second.
        self.celery.conf.broker_pool_limit = None
        self.artifacts = ArtifactStore(self.store)  # init files, in the same store as the records
        # Jobs whose worker died go back to the queue within about a lease (service.jobs.lease).
        self.sweeper = Sweeper(self.store.client, self.celery, settings.lease_ttl_s / 3).start()

    def _unavailable(self, what: str) -> Unavailable:
        # Clients learn that Redis is down; where it runs goes to the log only.
        event("redis unreachable", what=what, redis=safe_url(self.url))
        return Unavailable(f"{what}: the job store (Redis) is not reachable", code="broker_unavailable")

    def _start(self, job_id: str, request: AllocateRequest) -> None:
        digest, raw = samples_hash(request)
        self.store.put(samples_key(digest), raw)  # once per sample set; a new job refreshes its TTL
        payload = job_payload(request.model_dump(mode="json", exclude={"samples"}), digest)
        try:
            self.celery.send_task(TASK_ALLOCATE, args=[payload], task_id=job_id, queue=QUEUE_GPU)
        except BROKER_ERRORS:
            raise self._unavailable("cannot queue the job") from None

    def queued(self) -> int:
        return self.store.llen(QUEUE_GPU)

    def _run_state(self, job_id: str, record: JobRecord) -> RunState:
        try:
            meta = self.celery.backend.get_task_meta(job_id)
        except BROKER_ERRORS:
            raise self._unavailable("cannot read the job state") from None
        return run_state(meta["status"], meta.get("result"), meta.get("date_done"))

    def _revoke(self, job_id: str) -> None:
        # Best effort: workers that miss the broadcast still see the cancel flag before running.
        with contextlib.suppress(*BROKER_ERRORS):
            self.celery.control.revoke(job_id)

    def readiness(self) -> dict[str, Any]:
        self.store.ping()
        try:
            replies = self.celery.control.ping(timeout=WORKER_PING_S, limit=1)
        except BROKER_ERRORS:
            raise self._unavailable("cannot reach workers") from None
        if not replies:
            raise Unavailable(
                f"no worker answered within {WORKER_PING_S:.0f}s (start one with `heterolora worker`)",
                code="no_workers",
            )
        return {"status": "ready", "mode": "celery", "broker": "ok", "workers": len(replies)}

    def close(self) -> None:
        self.sweeper.stop()
        self.store.client.close()
        self.celery.close()
