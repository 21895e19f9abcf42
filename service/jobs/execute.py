"""Running one job, the same way on a Celery worker (worker.tasks) and in the single-machine queue
(service.jobs.embedded): the one progress-and-cancel callback, phase timing for metrics and logs,
the soft time limit, and failures as JobError with a code from heterolora.error_codes.
Imports torch (through service.jobs.run): the API process imports it only when a job runs."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from heterolora.caches import ModelCache
from heterolora.errors import HeteroLoraError
from heterolora.schemas import AllocateRequest
from service.errors import Unavailable
from service.jobs.artifacts import ArtifactStore, ArtifactTooLarge
from service.jobs.ranks import run_on_ranks
from service.jobs.records import JobError, cancel_key
from service.jobs.run import JobCancelled, run_request
from service.jobs.stats import JobStats
from service.jobs.store import Store
from service.logs import event
from service.settings import WorkerSettings

# Worth another delivery on the same input (Celery retries them); bad input never is.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError, redis.ConnectionError, redis.TimeoutError, Unavailable)
# An absolute path not preceded by a word, a dot, a colon or a slash (so URLs stay whole).
_PATH = re.compile(r"(?<![\w.:/~])/(?:[\w.@+-]+/)*[\w.@+-]+")
Report = Callable[[float, str], None]


def isolate_working_directory() -> None:
    """Run jobs in a fresh empty folder: transformers tries a model id as a folder relative to
    the working directory first, so a hub-style id such as `acme/tiny` could otherwise load a
    server folder that HETEROLORA_MODEL_DIRS never allowed. A hub id stays a hub id."""
    os.chdir(tempfile.mkdtemp(prefix="heterolora-jobs-"))


def phase_group(phase: str) -> str:
    """The metric phase of a progress phase: 'loading model' -> load, 'scoring 3/8' -> score."""
    if phase.startswith("loading"):
        return "load"
    if phase.startswith("scoring"):
        return "score"
    if phase.startswith("allocat"):
        return "allocate"
    return phase.split(" ")[0]


def scrub_paths(message: str, model_id: str) -> str:
    """Hide server paths in an error message; the path the client sent may stay."""

    def keep_own(match: re.Match[str]) -> str:
        path = match.group(0)
        return path if path == model_id or path.startswith(model_id.rstrip("/") + "/") else "<server path>"

    return _PATH.sub(keep_own, message)


class JobProgress:
    """The callback run_request reports to: it stops a cancelled job (the flag in the store), ends
    one that ran past its soft time limit, times each phase and passes progress on."""

    def __init__(self, job_id: str, key_name: str, store: Store, report: Report, deadline: float | None) -> None:
        self.job_id, self.key_name, self.store, self.report, self.deadline = job_id, key_name, store, report, deadline
        self.stats = JobStats(store)
        self.phase: str | None = None
        self.phase_started = time.monotonic()

    def __call__(self, fraction: float, phase: str) -> None:
        if self.store.get(cancel_key(self.job_id)):
            raise JobCancelled(self.job_id)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SoftTimeLimitExceeded("soft time limit")
        self.enter(phase_group(phase))
        self.report(fraction, phase)

    def enter(self, group: str | None) -> None:
        if group == self.phase:
            return
        if self.phase is not None:
            seconds = time.monotonic() - self.phase_started
            self.stats.observe(self.phase, seconds)
            event("job phase", job_id=self.job_id, key=self.key_name, phase=self.phase, seconds=round(seconds, 3))
        self.phase, self.phase_started = group, time.monotonic()


def _queue_seconds(created_at: str | None) -> float | None:
    if not created_at:
        return None
    return max(0.0, time.time() - datetime.fromisoformat(created_at).timestamp())


def run_job(
    job_id: str,
    request: AllocateRequest,
    *,
    cache: ModelCache,
    settings: WorkerSettings,
    store: Store,
    report: Report,
    key_name: str,
    created_at: str | None,
    artifacts: ArtifactStore,
    enforce_soft_limit: bool = False,
) -> dict[str, Any]:
    """The plan as JSON; a plan with a gradient init also leaves its tensor file in `artifacts`
    (served by GET /jobs/{id}/adapter.safetensors). Raises JobCancelled, JobError, or a
    TRANSIENT_ERRORS for a retry."""
    stats = JobStats(store)
    started = time.monotonic()
    queued = _queue_seconds(created_at)
    if queued is not None:
        stats.observe("queue", queued)
    deadline = started + settings.soft_time_limit_s if enforce_soft_limit else None
    progress = JobProgress(job_id, key_name, store, report, deadline)
    hits, misses = cache.hits, cache.misses
    event("job started", job_id=job_id, key=key_name, model=request.model_id)
    status, code = "failed", "internal_error"
    try:
        if settings.worker_procs > 1:  # one job over several processes (service/jobs/ranks.py)
            plan = run_on_ranks(
                request, settings.worker_procs, device=settings.device, dtype=settings.dtype, progress=progress
            )
        else:
            plan = run_request(
                request, cache=cache, device=settings.device, dtype=settings.dtype, device_map=settings.device_map,
                progress=progress,
            )  # fmt: skip
        if plan.init_data is not None:  # the file the plan's init.sha256 names
            artifacts.put(job_id, plan.init_data)
        status, code = "succeeded", ""
        return plan.model_dump(mode="json")
    except JobCancelled:
        status, code = "cancelled", "cancelled"
        raise
    except ArtifactTooLarge as exc:
        code = "artifact_too_large"
        raise JobError(code, str(exc), "init") from None
    except HeteroLoraError as exc:
        code = exc.code
        raise JobError(exc.code, scrub_paths(exc.message, request.model_id), exc.field) from None
    except SoftTimeLimitExceeded:
        code = "timeout"
        raise JobError("timeout", f"the job ran past its time limit of {settings.soft_time_limit_s}s") from None
    except TRANSIENT_ERRORS:
        status = "retried"
        raise
    except Exception as exc:  # a bug must end the job, not the worker
        logging.getLogger(__name__).exception("job %s failed unexpectedly", job_id)
        first_line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise JobError("internal_error", scrub_paths(first_line, request.model_id)) from None
    finally:
        progress.enter(None)
        if status != "retried":
            total = time.monotonic() - started
            stats.observe("total", total)
            stats.count("jobs_finished", status=status, code=code)
            event("job finished", job_id=job_id, key=key_name, status=status, code=code, seconds=round(total, 3))
        stats.count("model_cache_hits", cache.hits - hits)
        stats.count("model_cache_misses", cache.misses - misses)
