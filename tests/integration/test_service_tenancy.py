"""Tenancy with real parts (shared stack: Redis, worker, API with two named keys): a job belongs
to the key that created it. Before the fix any key could read, cancel or draw any job, and an
identical request from another key returned the first key's job id."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from devtools.stack import API_KEY, KEY_NAME, OTHER_KEY, OTHER_NAME, Stack, metric, wait_job
from heterolora.samples import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures",)  # fixtures: stack, model_root, http


def body(stack: Stack, seed: int) -> dict:
    tiny = {"num_batches": 2, "batch_size": 4, "max_length": 48, "budget": {"trainable_params": 2000}}
    return {"model_id": stack.tiny, "samples": builtin_sample()[:8], "seed": seed, **tiny}


def test_another_keys_job_does_not_exist(stack: Stack, http: httpx.Client) -> None:
    job_id = http.post("/allocate", json=body(stack, seed=501)).json()["job_id"]
    wait_job(http, job_id)
    with stack.api.client(key=OTHER_KEY) as other:
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/heatmap.png")):
            r = other.request(method, f"/jobs/{job_id}{path}")
            assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found"), (method, path)
        # An identical request from the other key is its own job, not a handle on the first one.
        theirs = other.post("/allocate", json=body(stack, seed=501)).json()["job_id"]
        assert theirs != job_id
        assert wait_job(other, theirs)["status"] == "succeeded"
    assert http.get(f"/jobs/{job_id}").json()["status"] == "succeeded"  # untouched by the other key


def test_idempotency_keys_are_per_api_key(stack: Stack, http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "shared-idempotency-key-1"}
    mine = http.post("/allocate", json=body(stack, seed=502), headers=headers).json()["job_id"]
    with stack.api.client(key=OTHER_KEY) as other:
        # The same Idempotency-Key with another body is no conflict for another API key.
        r = other.post("/allocate", json=body(stack, seed=503), headers=headers)
        assert r.status_code in (200, 202) and r.json()["job_id"] != mine


def test_redis_holds_no_api_key_and_logs_and_metrics_show_names(stack: Stack, http: httpx.Client) -> None:
    job_id = http.post("/allocate", json=body(stack, seed=504)).json()["job_id"]
    wait_job(http, job_id)
    client = redis.Redis.from_url(stack.redis.url)  # bytes: init files (heterolora:artifact:*) are binary
    secrets = (API_KEY.encode(), OTHER_KEY.encode())
    try:
        for key in client.scan_iter("heterolora:*"):
            assert not any(secret in key for secret in secrets)
            if client.type(key) == b"string":
                value = client.get(key)
                assert not any(secret in value for secret in secrets)
    finally:
        client.close()
    metrics = http.get("/metrics").text
    assert metric(
        metrics, "heterolora_http_requests_total", key=KEY_NAME, method="POST", route="/allocate", status="202"
    )
    assert API_KEY not in metrics and OTHER_KEY not in metrics
    api_log = stack.api.log.read_text()
    assert f'"key": "{KEY_NAME}"' in api_log and API_KEY not in api_log
    lines = [json.loads(line) for line in api_log.splitlines() if line.startswith("{")]
    posted = [x for x in lines if x["event"] == "request" and x.get("job_id") == job_id]
    assert {(x["method"], x["route"]) for x in posted} >= {("POST", "/allocate"), ("GET", "/jobs/{job_id}")}
    assert all(x["key"] == KEY_NAME for x in posted)
    worker_log = stack.worker_log.read_text()
    assert f'"event": "job phase", "job_id": "{job_id}", "key": "{KEY_NAME}"' in worker_log
    assert OTHER_NAME in stack.env["HETEROLORA_API_KEYS"]
