"""JobQueue semantics on the memory store, with a queue whose jobs the test finishes by hand:
one job per identical request, Idempotency-Key, retry after failure, cancel, 404s."""

from __future__ import annotations

import json
from typing import Any

import pytest

from heterolora.schemas import AllocateRequest
from service.errors import Conflict, JobNotFound, Unavailable
from service.jobs.queue import JobQueue
from service.jobs.records import RunState, job_key
from service.jobs.store import MemoryStore


class ManualQueue(JobQueue):
    """Jobs start when submitted and end when the test says so."""

    def __init__(self, fail_start: bool = False) -> None:
        super().__init__(MemoryStore(ttl_s=60))
        self.started: list[str] = []
        self.runs: dict[str, RunState] = {}
        self.fail_start = fail_start

    def _start(self, job_id: str, request: AllocateRequest) -> None:
        if self.fail_start:
            raise Unavailable("broker down", code="broker_unavailable")
        self.started.append(job_id)

    def _run_state(self, job_id: str, record: dict[str, Any]) -> RunState:
        return self.runs.get(job_id, RunState())

    def _revoke(self, job_id: str) -> None:
        return None

    def readiness(self) -> dict[str, Any]:
        return {"status": "ready"}


def request(seed: int = 0) -> AllocateRequest:
    return AllocateRequest(model_id="minilm", samples=[{"text": "a", "label": 1}], seed=seed)


def test_identical_requests_share_a_job_until_it_fails() -> None:
    queue = ManualQueue()
    first = queue.submit(request())
    assert queue.submit(request()).job_id == first.job_id and queue.started == [first.job_id]
    assert queue.submit(request(seed=1)).job_id != first.job_id
    queue.runs[first.job_id] = RunState("succeeded", plan=None)
    assert queue.submit(request()).status == "succeeded"
    queue.runs[first.job_id] = RunState("failed", error={"code": "timeout", "message": "slow"})
    again = queue.submit(request())
    assert again.job_id != first.job_id and again.status == "queued"
    assert queue.get(first.job_id).error.code == "timeout"  # the old job keeps its record


def test_idempotency_key() -> None:
    queue = ManualQueue()
    first = queue.submit(request(), key="k1")
    queue.runs[first.job_id] = RunState("failed", error={"code": "x", "message": "y"})
    assert queue.submit(request(), key="k1").job_id == first.job_id  # the key pins even a failed job
    with pytest.raises(Conflict) as clash:
        queue.submit(request(seed=2), key="k1")
    assert clash.value.code == "idempotency_key_reused"
    queue.store.delete(job_key(first.job_id))  # the record expired before the key did
    fresh = queue.submit(request(), key="k1")
    assert fresh.job_id != first.job_id and queue.submit(request(), key="k1").job_id == fresh.job_id


def test_cancel_and_not_found() -> None:
    queue = ManualQueue()
    job = queue.submit(request())
    assert queue.cancel(job.job_id).status == "cancelled"
    assert queue.cancel(job.job_id).status == "cancelled"  # idempotent
    assert queue.submit(request()).job_id != job.job_id  # cancelled jobs do not pin the request
    done = queue.submit(request(seed=3))
    queue.runs[done.job_id] = RunState("succeeded")
    with pytest.raises(Conflict, match="already succeeded"):
        queue.cancel(done.job_id)
    with pytest.raises(JobNotFound):
        queue.get("nope")
    assert queue.status("nope") is None


def test_failed_enqueue_leaves_no_job_behind() -> None:
    queue = ManualQueue(fail_start=True)
    with pytest.raises(Unavailable):
        queue.submit(request())
    records = [k for k in queue.store._items if k.startswith("heterolora:job:")]
    assert records == []
    queue.fail_start = False
    job = queue.submit(request())  # the released mapping is taken over
    assert queue.started == [job.job_id]
    assert json.loads(queue.store.get(job_key(job.job_id)))["job_id"] == job.job_id
