"""Single-machine mode: no Redis, jobs run one at a time in a thread of the API process, with the
same API semantics (records, idempotency, progress, cancel). Torch loads with the first job."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from heterolora.errors import HeteroLoraError
from heterolora.schemas import AllocateRequest
from service.artifacts import ArtifactStore, ArtifactTooLarge, artifact_error
from service.jobs import JobQueue, RunState, internal_error, now
from service.settings import Settings
from service.store import MemoryStore
from worker.app import cancel_key, job_key
from worker.settings import WorkerSettings


class EmbeddedJobQueue(JobQueue):
    def __init__(self, settings: Settings) -> None:
        super().__init__(MemoryStore(settings.result_ttl_s))
        self.worker = WorkerSettings()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heterolora-job")
        self._cache: Any = None
        self.artifacts = ArtifactStore.in_memory(settings.result_ttl_s)  # init files (issue 14)

    def _start(self, job_id: str, request: AllocateRequest) -> None:
        self._pool.submit(self._run, job_id, request)

    def _run_state(self, job_id: str, record: dict[str, Any]) -> RunState:
        return RunState(**record["run"]) if "run" in record else RunState()

    def _revoke(self, job_id: str) -> None:
        return None  # the job's next progress report sees the cancel flag

    def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "mode": "embedded", "broker": "in-process", "workers": 1}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _record(self, job_id: str, run: RunState) -> None:
        raw = self.store.get(job_key(job_id))
        if raw is not None:
            self.store.put(job_key(job_id), json.dumps({**json.loads(raw), "run": asdict(run)}))

    def _run(self, job_id: str, request: AllocateRequest) -> None:
        from heterolora.runner import JobCancelled, ModelCache, run_request  # torch: only once a job runs

        if self._cache is None:
            self._cache = ModelCache(self.worker.model_cache_size)
        started = now()

        def progress(fraction: float, phase: str) -> None:
            if self.store.get(cancel_key(job_id)):
                raise JobCancelled(job_id)
            self._record(job_id, RunState("running", round(fraction, 4), phase, started))

        try:
            plan = run_request(
                request, cache=self._cache, device=self.worker.device, dtype=self.worker.dtype, progress=progress
            )
        except JobCancelled:
            run = RunState("cancelled", 0.0, "cancelled", started, now())
        except HeteroLoraError as exc:
            run = RunState("failed", 0.0, "failed", started, now(), error=exc.to_dict())
        except Exception as exc:  # a bug must end the job, not the worker thread
            run = RunState("failed", 0.0, "failed", started, now(), error=internal_error(exc))
        else:
            run = RunState("succeeded", 1.0, "done", started, now(), plan=plan.model_dump(mode="json"))
            if plan.init_data is not None:  # the init file the plan's sha256 names (issue 14)
                try:
                    self.artifacts.put(job_id, plan.init_data)
                except ArtifactTooLarge as exc:
                    run = RunState("failed", 0.0, "failed", started, now(), error=artifact_error(exc))
        self._record(job_id, run)
