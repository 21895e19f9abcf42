"""Faults with real parts: a worker killed with SIGKILL mid-job, a job that kills its worker
process every time it runs, and Redis going away and back.

This module runs its own Redis, worker and API, with a short visibility timeout (24 s) so that a
job whose whole worker died is handed out again within the test. The worker is
devtools.crashing_worker: its job process calls os._exit on one model id (CRASH_MODEL), and
plans every other model as usual.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devtools.crashing_worker import CRASH_MODEL
from devtools.stack import (
    Stack,
    deliveries,
    received,
    start_stack,
    start_worker,
    stop,
    stop_stack,
    wait_job,
    wait_until,
)
from heterolora.samples import builtin_sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures",)  # fixture: model_root
# Room for MiniLM to load and score on two busy shared cores, yet a redelivery within the test.
LIMITS = {
    "HETEROLORA_VISIBILITY_TIMEOUT_S": "24",
    "HETEROLORA_TIME_LIMIT_S": "22",
    "HETEROLORA_SOFT_TIME_LIMIT_S": "20",
}
TINY = {"num_batches": 2, "batch_size": 4, "max_length": 48, "budget": {"trainable_params": 2000}}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("faults"), model_root, crashing=True, **LIMITS)
    yield running
    stop_stack(running)


def test_killed_worker_job_is_redelivered_and_completes(faults: Stack) -> None:
    http = faults.api.client()
    slow = {"model_id": "minilm", "samples": builtin_sample()[:32], "num_batches": 8, "batch_size": 4, "seed": 21}
    job_id = http.post("/allocate", json=slow).json()["job_id"]
    wait_job(http, job_id, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    stop(faults.worker, signal.SIGKILL)  # the whole worker: main process and its pool child
    assert http.get(f"/jobs/{job_id}").json()["status"] == "running"  # nobody acknowledged it
    faults.worker = start_worker(faults.env, faults.worker_log, "w2", crashing=True)
    job = wait_job(http, job_id, timeout=120)
    assert job["status"] == "succeeded", job
    assert job["plan"]["settings"]["batches"] == 8
    assert received(faults.worker_log, job_id) == 2  # once per worker: nothing lost, no third run
    assert deliveries(faults.redis.url, job_id) == {"started": 2, "open": 1}  # the killed one never ended


def test_job_that_kills_its_worker_fails_worker_lost_after_two_redeliveries(faults: Stack) -> None:
    """The old behaviour: the job was handed out again after every death, forever."""
    http = faults.api.client()
    crash = {"model_id": CRASH_MODEL, "samples": builtin_sample()[:8], **TINY}
    job_id = http.post("/allocate", json=crash).json()["job_id"]
    job = wait_job(http, job_id, timeout=120)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "worker_lost" and job["finished_at"]
    assert "died 3 times" in job["error"]["message"] and "re-delivered 2 times" in job["error"]["message"]
    # Three deliveries died in the job (os._exit); the fourth found them open and gave up.
    assert deliveries(faults.redis.url, job_id) == {"started": 4, "open": 4}
    assert received(faults.worker_log, job_id) == 4
    metrics = http.get("/metrics").text
    assert 'heterolora_jobs_finished_total{code="worker_lost",status="failed"} 1.0' in metrics
    redelivered = [line for line in metrics.splitlines() if line.startswith("heterolora_worker_lost_redeliveries")]
    assert float(redelivered[0].split()[-1]) >= 3  # plus the SIGKILL test's one when it ran first
    # The same worker still plans other jobs.
    fine = http.post("/allocate", json={**crash, "model_id": faults.tiny}).json()["job_id"]
    assert wait_job(http, fine)["status"] == "succeeded"


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = call()
    return response, time.perf_counter() - start


def test_redis_outage_gives_503_then_recovers(faults: Stack) -> None:
    http = faults.api.client()
    tiny = {
        "model_id": faults.tiny,
        "samples": builtin_sample()[:8],
        "budget": {"trainable_params": 2000},
        "num_batches": 2,
        "batch_size": 4,
        "max_length": 48,
    }
    faults.redis.stop()
    for call in (lambda: http.get("/readyz"), lambda: http.post("/allocate", json=tiny), lambda: http.get("/jobs/x")):
        r, seconds = _timed(call)
        assert seconds < 2.0
        assert r.status_code == 503 and r.headers["Retry-After"] == "2"
        err = r.json()["error"]
        assert err["code"] == "broker_unavailable"
        assert "Redis" in err["message"] and "not reachable" in err["message"]
        assert str(faults.redis.port) not in r.text and "127.0.0.1" not in r.text  # no address for clients
    faults.redis.start()  # same port, empty
    wait_until(lambda: http.get("/readyz").status_code == 200, 60, "ready again")
    r = http.post("/allocate", json=tiny)
    assert r.status_code == (200 if r.json()["status"] == "succeeded" else 202)  # 200: done before the answer
    assert wait_job(http, r.json()["job_id"])["status"] == "succeeded"
