"""The performance benchmark's service sections, quick mode: real Redis, worker and API, tiny BERTs."""

from __future__ import annotations

import shutil

import pytest

from benchmarks.perf.service import service_sections

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_service_sections_measure_cache_known_plan_and_new_job() -> None:
    out = service_sections(True, "", rounds=1, requests=5, jobs=1, num_batches=2)
    cache, known, new_job = out["cache"], out["cached_post"], out["new_job"]
    assert cache["ratio"] > 0 and cache["miss_ms"]["e2e_ms"] > 0 and cache["first_job_fresh_worker_ms"] > 0
    assert known["requests"] == 5 and 0 < known["p50_ms"] <= known["p99_ms"]
    assert set(new_job["by_mode"]) == {"wait", "poll"}
    assert new_job["by_mode"]["wait"]["engine_ms"] > 0
