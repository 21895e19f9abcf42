"""Single-machine mode: no Redis, jobs run one at a time in a thread of the API process, with the
same API semantics (records, idempotency, progress, cancel, soft time limit, metrics). Torch
loads with the first job."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from heterolora.schemas import AllocateRequest
from service.jobs.artifacts import ArtifactStore
from service.jobs.queue import JobQueue, Limits, internal_error
from service.jobs.records import JobError, JobRecord, RunState, job_key, now
from service.jobs.store import MemoryStore
from service.settings import Settings, WorkerSettings


class EmbeddedJobQueue(JobQueue):
    def __init__(self, settings: Settings) -> None:
        limits = Limits(settings.max_queued_jobs, settings.rate_limit_per_minute)
        super().__init__(MemoryStore(settings.result_ttl_s), limits)
        self.worker = WorkerSettings()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heterolora-job")
        self._cache: Any = None
        self._waiting = 0
        self._lock = threading.Lock()
        self.artifacts = ArtifactStore(self.store)  # init files, in the same store as the records

    def _start(self, job_id: str, request: AllocateRequest) -> None:
        with self._lock:
            self._waiting += 1
        self._pool.submit(self._run, job_id, request)

    def queued(self) -> int:
        return self._waiting

    def _run_state(self, job_id: str, record: JobRecord) -> RunState:
        return RunState(**record.run) if record.run else RunState()

    def _revoke(self, job_id: str) -> None:
        return None  # the job's next progress report sees the cancel flag

    def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "mode": "embedded", "broker": "in-process", "workers": 1}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _record(self, job_id: str, run: RunState) -> JobRecord | None:
        raw = self.store.get(job_key(job_id))
        if raw is None:
            return None
        record = JobRecord.loads(raw)
        record.run = asdict(run)
        self.store.put(job_key(job_id), record.dumps())
        return record

    def _run(self, job_id: str, request: AllocateRequest) -> None:
        with self._lock:
            self._waiting -= 1
        from heterolora.caches import ModelCache  # torch: only once a job runs
        from service.jobs.execute import isolate_working_directory, run_job
        from service.jobs.run import JobCancelled

        if self._cache is None:
            isolate_working_directory()  # the first job: nothing in this process needs the old one
            self._cache = ModelCache(self.worker.model_cache_size)
        started = now()
        record = self._record(job_id, RunState("running", 0.0, "starting", started))
        if record is None:
            return  # expired before it ran

        def report(fraction: float, phase: str) -> None:
            self._record(job_id, RunState("running", round(fraction, 4), phase, started))

        try:
            plan = run_job(
                job_id,
                request,
                cache=self._cache,
                settings=self.worker,
                store=self.store,
                report=report,
                key_name=record.key_name,
                created_at=record.created_at,
                artifacts=self.artifacts,
                enforce_soft_limit=True,
            )
        except JobCancelled:
            run = RunState("cancelled", 0.0, "cancelled", started, now())
        except JobError as exc:
            error = {"code": exc.code, "message": exc.message, "field": exc.field}
            run = RunState("failed", 0.0, "failed", started, now(), error=error)
        except Exception as exc:  # a transient error here has no second delivery: the job ends
            run = RunState("failed", 0.0, "failed", started, now(), error=internal_error(exc))
        else:
            run = RunState("succeeded", 1.0, "done", started, now(), plan=plan)
        self._record(job_id, run)
