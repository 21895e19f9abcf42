"""A Celery worker with concurrency N on C CPUs plans each job with at most max(1, C // N) torch
threads (real Redis, real worker, real API; the plan records the threads it ran on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack, start_stack, stop_stack, wait_job
from heterolora.samples import builtin_sample
from heterolora.threads import usable_cpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures",)  # fixture: model_root
CONCURRENCY = 2


@pytest.fixture(scope="module")
def two_slot_worker(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Stack]:
    # OMP_NUM_THREADS removed: the worker alone decides, as on a real host.
    running = start_stack(tmp_path_factory.mktemp("threads"), model_root, concurrency=CONCURRENCY, OMP_NUM_THREADS=None)
    yield running
    stop_stack(running)


def test_each_job_runs_on_its_share_of_the_cpus(two_slot_worker: Stack) -> None:
    http = two_slot_worker.api.client()
    request = {"model_id": two_slot_worker.tiny, "samples": builtin_sample()[:8], "num_batches": 2, "batch_size": 4}
    ids = [http.post("/allocate", json=request | {"seed": seed}).json()["job_id"] for seed in (1, 2)]
    jobs = [wait_job(http, job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"], jobs
    share = max(1, usable_cpus() // CONCURRENCY)
    assert [j["plan"]["timings"]["torch_threads"] for j in jobs] == [share, share]
