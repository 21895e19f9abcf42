"""The planning task: thin glue between Celery and service.jobs.execute (which imports torch).

Deliveries are counted in Redis (heterolora:deliveries:{id}): `open` goes up when a delivery
starts and down when it ends in any way Python sees. A delivery that finds earlier ones still
open follows a worker that died on the job (killed, out of memory). After
HETEROLORA_MAX_REDELIVERIES such re-deliveries the job fails with `worker_lost` instead of
killing worker after worker.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.utils.log import get_task_logger

from heterolora.caches import ModelCache
from heterolora.errors import HeteroLoraError
from heterolora.schemas import AllocateRequest
from service import logs
from service.errors import Unavailable
from service.jobs.artifacts import ArtifactStore
from service.jobs.celery_app import celery_app
from service.jobs.execute import TRANSIENT_ERRORS, isolate_working_directory, run_job
from service.jobs.lease import Lease, Sweeper
from service.jobs.records import (
    ANONYMOUS,
    TASK_ALLOCATE,
    JobError,
    JobRecord,
    deliveries_key,
    job_key,
    now,
    samples_key,
)
from service.jobs.run import JobCancelled, preload
from service.jobs.stats import JobStats
from service.jobs.store import RedisStore
from service.settings import get_worker_settings

log = get_task_logger(__name__)
REDIS_BACK_S = 120.0  # how long a job waits for Redis to come back before it gives up


@lru_cache(maxsize=1)
def model_cache() -> ModelCache:
    return ModelCache(get_worker_settings().model_cache_size)


@lru_cache(maxsize=1)
def job_store() -> RedisStore:
    settings = get_worker_settings()
    return RedisStore(settings.redis_url or "", settings.result_ttl_s, max(settings.redis_timeout_s, 5.0))


@lru_cache(maxsize=1)
def artifact_store() -> ArtifactStore:
    settings = get_worker_settings()
    return ArtifactStore.for_redis(settings.redis_url or "", settings.result_ttl_s)


@worker_process_init.connect
def _preload_models(**_: Any) -> None:
    """Set up a new worker process (prefork pool): logs, an empty working directory, and a cache
    warmed with HETEROLORA_PRELOAD_MODELS."""
    settings = get_worker_settings()
    logs.configure(settings.log_format)
    isolate_working_directory()
    ids = [m.strip() for m in settings.preload_models.split(",") if m.strip()]
    try:
        preload(model_cache(), ids, device=settings.device, dtype=settings.dtype, device_map=settings.device_map)
    except HeteroLoraError as exc:  # a bad id must not keep the worker from serving other models
        log.error("preload failed: %s", exc.message)


def start_delivery(store: RedisStore, job_id: str, max_redeliveries: int) -> None:
    """Count this delivery; fail the job when earlier workers died on it too often."""
    store.incr(deliveries_key(job_id), "started")
    open_deliveries = int(store.incr(deliveries_key(job_id), "open"))
    lost = open_deliveries - 1  # earlier deliveries that never ended: their worker died
    if lost > 0:
        JobStats(store).count("worker_lost_redeliveries")
        log.warning("job %s: delivery after %d lost worker(s)", job_id, lost)
    if lost > max_redeliveries:
        JobStats(store).count("jobs_finished", status="failed", code="worker_lost")
        raise JobError(
            "worker_lost",
            f"the worker running this job died {lost} times (killed, or out of memory); "
            f"it was re-delivered {max_redeliveries} times and is not retried again",
        )


def load_request(store: RedisStore, payload: dict[str, Any]) -> AllocateRequest:
    """The request of a task message: its options plus the sample set stored under its hash."""
    raw = store.get(samples_key(payload["samples"]))
    if raw is None:
        raise JobError("internal_error", "the job's samples expired from the job store before it ran")
    return AllocateRequest.model_validate({**payload["request"], "samples": json.loads(raw)})


def wait_for_redis(store: RedisStore, seconds: float = REDIS_BACK_S) -> bool:
    """Wait (bounded) until Redis answers again; whether it does."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            store.ping()
            return True
        except Unavailable:
            if time.monotonic() > deadline:
                return False
            time.sleep(1.0)


def end_delivery(store: RedisStore, job_id: str) -> None:
    """Count this delivery as ended. With Redis away for a moment, wait for it: a delivery left
    open would make the next one take this worker for a dead one."""
    try:
        store.incr(deliveries_key(job_id), "open", -1)
    except Unavailable:
        if not wait_for_redis(store):
            raise
        store.incr(deliveries_key(job_id), "open", -1)


class PlanningTask(Task):
    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """A retry is a new message on the broker: when Redis is away (a transient error often
        means just that), wait for it first, or Celery rejects the job for good."""
        wait_for_redis(job_store())
        return super().retry(*args, **kwargs)


@celery_app.task(
    bind=True,
    base=PlanningTask,
    name=TASK_ALLOCATE,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=get_worker_settings().max_retries,
    throws=(JobError,),  # expected failures: logged as one line, without a traceback
)
def allocate(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
    job_id = self.request.id
    settings = get_worker_settings()
    store = job_store()
    start_delivery(store, job_id, settings.max_redeliveries)
    try:
        with Lease(store.client, job_id, settings.lease_ttl_s):  # renewed while the job runs
            return run_allocate(self, job_id, payload, store)
    except JobCancelled:
        raise Ignore() from None  # the API already reports the job as cancelled
    finally:
        end_delivery(store, job_id)


def run_allocate(task: Any, job_id: str, payload: dict[str, Any], store: RedisStore) -> dict[str, Any]:
    """One delivery's work: the plan and when it started."""
    raw = store.get(job_key(job_id))
    record = JobRecord.loads(raw) if raw else None
    started_at = now()

    def report(fraction: float, phase: str) -> None:
        task.update_state(
            state="PROGRESS", meta={"fraction": round(fraction, 4), "phase": phase, "started_at": started_at}
        )

    plan = run_job(
        job_id,
        load_request(store, payload),
        cache=model_cache(),
        settings=get_worker_settings(),
        store=store,
        report=report,
        key_name=record.key_name if record else ANONYMOUS,
        created_at=record.created_at if record else None,
        artifacts=artifact_store(),
    )
    return {"plan": plan, "started_at": started_at}


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    """In the worker's main process: hand back the jobs of workers that died (service.jobs.lease),
    first at once (a restarted worker finds its own lapsed job), then every third of the TTL."""
    global _sweeper
    settings = get_worker_settings()
    client = redis.Redis.from_url(
        settings.redis_url or "", decode_responses=True, socket_timeout=5.0, socket_connect_timeout=5.0
    )
    _sweeper = Sweeper(client, celery_app, settings.lease_ttl_s / 3).start()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()


_sweeper: Sweeper | None = None
