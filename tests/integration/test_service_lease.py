"""Job leases with real parts (service.jobs.lease): a real Redis; then a real API and Celery worker
whose whole process group is killed with SIGKILL mid-job, with the default visibility timeout
(two hours), so only the lease can bring the job back within the test."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.stack import (
    RedisServer,
    Stack,
    deliveries,
    received,
    start_stack,
    start_worker,
    stop,
    stop_stack,
    wait_job,
)
from heterolora.samples import builtin_sample
from service.jobs.celery_app import make_celery
from service.jobs.lease import Lease, sweep
from service.jobs.records import RUNNING_KEY, lease_key
from service.settings import WorkerSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures",)  # fixture: model_root
LEASE_TTL_S = 10
FOUND_WITHIN_S = 90
REDIS_DOWN_S = 5


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_a_live_lease_is_renewed_and_a_lapsed_one_is_claimed_once(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    celery = make_celery(WorkerSettings(redis_url=redis_server.url))
    ttl = 1.0
    with Lease(client, "alive", ttl):
        time.sleep(3 * ttl)  # three TTLs: only the heartbeat keeps the key
        assert client.get(lease_key("alive")) is not None
        client.hset(RUNNING_KEY, "dead", "token 0.0")  # a job whose worker never renews
        assert sweep(client, celery) == []  # "dead" had no message left to hand back
        assert client.hgetall(RUNNING_KEY).keys() == {"alive"}  # claimed and dropped; the live one kept
    assert client.hgetall(RUNNING_KEY) == {} and client.get(lease_key("alive")) is None
    celery.close()
    client.close()


@pytest.fixture()
def leased(tmp_path: Path, model_root: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, model_root, persist=True, HETEROLORA_LEASE_TTL_S=str(LEASE_TTL_S))
    yield running
    stop_stack(running)


def test_a_killed_workers_job_is_requeued_within_90_s(leased: Stack) -> None:
    """The worker dies with the job (SIGKILL to main process and pool child). The job used to
    show `running` until the visibility timeout (7,200 s); its lease lapses and the API's sweep
    queues it again. A new worker then plans it, once."""
    http = leased.api.client()
    slow = {"model_id": "minilm", "samples": builtin_sample()[:32], "num_batches": 8, "batch_size": 4, "seed": 5}
    job_id = http.post("/allocate", json=slow).json()["job_id"]
    wait_job(http, job_id, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    assert leased.worker is not None
    stop(leased.worker, signal.SIGKILL)
    assert http.get(f"/jobs/{job_id}").json()["status"] == "running"  # nobody acknowledged it
    requeued = wait_job(http, job_id, timeout=FOUND_WITHIN_S, until=lambda j: j["status"] != "running")
    assert requeued["status"] == "queued", requeued
    leased.worker = start_worker(leased.env, leased.worker_log, "w2")
    job = wait_job(http, job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert received(leased.worker_log, job_id) == 2  # once per worker: nothing lost, no third run
    assert deliveries(leased.redis.url, job_id) == {"started": 2, "open": 1}  # the killed one never ended


def test_a_job_outlives_a_redis_restart(leased: Stack) -> None:
    """Redis restarts (on its own data) while a job scores. The job's next progress report fails,
    and Celery's retry needs the broker: it used to reject the job for good (`internal_error`,
    "Reject: OperationalError"); the task now waits for Redis before it retries."""
    http = leased.api.client()
    slow = {"model_id": "minilm", "samples": builtin_sample()[:32], "num_batches": 8, "batch_size": 4, "seed": 6}
    job_id = http.post("/allocate", json=slow).json()["job_id"]
    wait_job(http, job_id, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    leased.redis.stop()
    time.sleep(REDIS_DOWN_S)  # an outage of a few seconds: the time is the fault itself
    leased.redis.start()
    job = wait_job(http, job_id, timeout=300)
    assert job["status"] == "succeeded", job
