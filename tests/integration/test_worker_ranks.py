"""A worker with HETEROLORA_WORKER_PROCS=2 runs each job on two ranks (torch's elastic launcher,
gloo on CPU): its plan equals the one-process plan, progress reaches the API, a cancelled job
stops its ranks, and a rank killed mid-job fails the job clearly with no plan stored. Real Redis,
Celery worker, API and rank processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack, start_stack, stop_stack, wait_job, wait_until
from heterolora.config import AllocationConfig
from heterolora.planner import plan
from heterolora.samples import builtin_sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures",)  # fixture: model_root
OPTIONS = {"num_batches": 4, "batch_size": 4, "max_length": 32, "budget": {"trainable_params": 2000}}
SLOW = {"model_id": "minilm", "samples": builtin_sample()[:64], "num_batches": 16, "batch_size": 4}


@pytest.fixture(scope="module")
def ranks_stack(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("ranks"), model_root, HETEROLORA_WORKER_PROCS="2")
    yield running
    stop_stack(running)


def _rank_pids(rank: int) -> list[int]:
    """Processes started by the elastic launcher as `rank` (their environment says so)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        launched = any(e.startswith(b"TORCHELASTIC_RUN_ID=heterolora-") for e in environ)
        if launched and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_two_rank_job_plans_like_one_process(ranks_stack: Stack) -> None:
    http = ranks_stack.api.client()
    samples = builtin_sample()[:16]
    job_id = http.post("/allocate", json={"model_id": ranks_stack.tiny, "samples": samples, **OPTIONS}).json()["job_id"]
    job = wait_job(http, job_id)
    assert job["status"] == "succeeded", job
    single = plan(ranks_stack.tiny, samples, AllocationConfig(**OPTIONS), device="cpu")
    got = job["plan"]
    assert got["settings"]["world_size"] == 2 and single.settings["world_size"] == 1
    assert {m["name"]: m["rank"] for m in got["modules"] if m["rank"]} == single.ranks
    for mine, theirs in zip(got["modules"], single.modules, strict=True):
        assert abs(mine["score"] - theirs.score) <= 1e-5 * abs(theirs.score)


def test_progress_and_cancel_reach_the_ranks(ranks_stack: Stack) -> None:
    http = ranks_stack.api.client()
    job_id = http.post("/allocate", json=SLOW | {"seed": 3}).json()["job_id"]
    job = wait_job(http, job_id, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    assert job["status"] == "running" and job["progress"]["phase"].endswith("/8")  # rank 0's half of 16
    assert http.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"
    wait_until(lambda: not _rank_pids(0) and not _rank_pids(1), 60, "ranks stopped")
    assert "plan" not in http.get(f"/jobs/{job_id}").json()


def test_a_rank_killed_mid_job_fails_it_without_a_plan(ranks_stack: Stack) -> None:
    http = ranks_stack.api.client()
    job_id = http.post("/allocate", json=SLOW | {"seed": 4}).json()["job_id"]
    wait_job(http, job_id, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    for pid in _rank_pids(1):
        os.kill(pid, signal.SIGKILL)
    job = wait_job(http, job_id)
    assert job["status"] == "failed" and "plan" not in job, job
    assert job["error"]["code"] == "distributed_failed"
    assert "rank" in job["error"]["message"] and "without a plan" in job["error"]["message"]
