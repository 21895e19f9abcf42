"""Faults with real parts: a worker killed with SIGKILL mid-job, and Redis going away and back.

This module runs its own Redis, worker and API, with a short visibility timeout (12 s) so that a
job whose worker died is handed out again within the test.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devtools.stack import (
    Stack,
    received,
    start_stack,
    start_worker,
    stop,
    stop_stack,
    wait_job,
    wait_until,
)
from heterolora.data import builtin_sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("devtools.stack",)  # fixture: model_root
LIMITS = {
    "HETEROLORA_VISIBILITY_TIMEOUT_S": "12",
    "HETEROLORA_TIME_LIMIT_S": "11",
    "HETEROLORA_SOFT_TIME_LIMIT_S": "10",
}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("faults"), model_root, **LIMITS)
    yield running
    stop_stack(running)


def test_killed_worker_job_is_redelivered_and_completes(faults: Stack) -> None:
    http = faults.api.client()
    slow = {"model_id": "minilm", "samples": builtin_sample()[:64], "num_batches": 16, "batch_size": 4, "seed": 21}
    job_id = http.post("/allocate", json=slow).json()["job_id"]
    wait_job(http, job_id, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    stop(faults.worker, signal.SIGKILL)  # the whole worker: main process and its pool child
    assert http.get(f"/jobs/{job_id}").json()["status"] == "running"  # nobody acknowledged it
    faults.worker = start_worker(faults.env, faults.worker_log, "w2")
    job = wait_job(http, job_id, timeout=120)
    assert job["status"] == "succeeded", job
    assert job["plan"]["settings"]["batches"] == 16
    assert received(faults.worker_log, job_id) == 2  # once per worker: nothing lost, no third run


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
        assert f"Redis at 127.0.0.1:{faults.redis.port}/0 is not reachable" in err["message"]
    faults.redis.start()  # same port, empty
    wait_until(lambda: http.get("/readyz").status_code == 200, 60, "ready again")
    r = http.post("/allocate", json=tiny)
    assert r.status_code == 202
    assert wait_job(http, r.json()["job_id"])["status"] == "succeeded"
