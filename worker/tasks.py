"""The planning task: thin glue between Celery and heterolora.runner (which imports torch)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.signals import worker_process_init
from celery.utils.log import get_task_logger

from heterolora.errors import HeteroLoraError
from heterolora.runner import JobCancelled, ModelCache, preload, run_request
from heterolora.schemas import AllocateRequest
from service.artifacts import ArtifactStore, ArtifactTooLarge, artifact_error
from worker.app import TASK_ALLOCATE, JobError, cancel_key, celery_app
from worker.settings import get_worker_settings

log = get_task_logger(__name__)

# Worth another try on the same input; bad input (HeteroLoraError) never is.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError, redis.ConnectionError, redis.TimeoutError)


@lru_cache(maxsize=1)
def model_cache() -> ModelCache:
    return ModelCache(get_worker_settings().model_cache_size)


@worker_process_init.connect
def _preload_models(**_: Any) -> None:
    """Warm the cache of a new worker process (prefork pool) with HETEROLORA_PRELOAD_MODELS."""
    settings = get_worker_settings()
    ids = [m.strip() for m in settings.preload_models.split(",") if m.strip()]
    try:
        preload(model_cache(), ids, device=settings.device, dtype=settings.dtype)
    except HeteroLoraError as exc:  # a bad id must not keep the worker from serving other models
        log.error("preload failed: %s", exc.message)


@celery_app.task(
    bind=True,
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
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")

    def progress(fraction: float, phase: str) -> None:
        if self.backend.client.exists(cancel_key(job_id)):
            raise JobCancelled(job_id)
        meta = {"fraction": round(fraction, 4), "phase": phase, "started_at": started_at}
        self.update_state(state="PROGRESS", meta=meta)

    try:
        request = AllocateRequest.model_validate(payload)
        plan = run_request(
            request, cache=model_cache(), device=settings.device, dtype=settings.dtype, progress=progress
        )
    except JobCancelled:
        raise Ignore() from None  # the API already reports the job as cancelled
    except HeteroLoraError as exc:
        raise JobError(exc.code, exc.message, exc.field) from None
    except SoftTimeLimitExceeded:
        raise JobError("timeout", f"the job ran past its time limit of {settings.soft_time_limit_s}s") from None
    if plan.init_data is not None:  # the init file GET /jobs/{id}/adapter.safetensors serves (issue 14)
        try:
            ArtifactStore.for_redis(settings.redis_url or "", settings.result_ttl_s).put(job_id, plan.init_data)
        except ArtifactTooLarge as exc:
            raise JobError(**artifact_error(exc)) from None
    return {"plan": plan.model_dump(mode="json"), "started_at": started_at}
