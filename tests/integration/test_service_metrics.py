"""GET /metrics scraped from the real stack (Redis, Celery worker, uvicorn): the counters move
when requests and jobs happen. Job metrics come from the worker through Redis."""

from __future__ import annotations

import httpx
import pytest

from devtools.stack import KEY_NAME, Stack, metric, wait_job
from heterolora.samples import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures",)  # fixtures: stack, model_root, http
PHASES = ("queue", "load", "score", "allocate", "total")


def test_metrics_move_with_requests_and_jobs(stack: Stack, http: httpx.Client) -> None:
    def scrape() -> dict[str, float]:
        page = http.get("/metrics")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
        text = page.text
        values = {
            "posts": metric(
                text, "heterolora_http_requests_total", key=KEY_NAME, method="POST", route="/allocate", status="202"
            ),
            "latency": metric(text, "heterolora_http_request_seconds_count", method="POST", route="/allocate"),
            "succeeded": metric(text, "heterolora_jobs_finished_total", code="", status="succeeded"),
            "failed": metric(text, "heterolora_jobs_finished_total", code="model_not_found", status="failed"),
            "cache": metric(text, "heterolora_model_cache_hits_total")
            + metric(text, "heterolora_model_cache_misses_total"),
        }
        for phase in PHASES:
            values[phase] = metric(text, "heterolora_job_phase_seconds_count", phase=phase)
        assert "heterolora_queue_depth" in text and "heterolora_worker_lost_redeliveries_total" in text
        return values

    before = scrape()
    tiny = {"num_batches": 2, "batch_size": 4, "max_length": 48, "budget": {"trainable_params": 2000}}
    good = http.post("/allocate", json={"model_id": stack.tiny, "samples": builtin_sample()[:8], "seed": 601, **tiny})
    bad = http.post("/allocate", json={"model_id": "acme/not-cached", "samples": builtin_sample()[:8], **tiny})
    assert wait_job(http, good.json()["job_id"])["status"] == "succeeded"
    assert wait_job(http, bad.json()["job_id"])["status"] == "failed"
    after = scrape()
    assert after["posts"] == before["posts"] + 2 and after["latency"] >= before["latency"] + 2
    assert after["succeeded"] == before["succeeded"] + 1 and after["failed"] == before["failed"] + 1
    assert after["cache"] == before["cache"] + 2  # one model lookup per job
    for phase in ("queue", "load", "score", "allocate", "total"):
        assert after[phase] >= before[phase] + 1, phase
