"""The API over HTTP with real parts: redis-server, a `heterolora worker` (Celery) subprocess and
`heterolora serve` (uvicorn), each on a free port."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from devtools.stack import API_KEY, MAX_BODY_BYTES, MAX_SAMPLES, Stack, received, wait_job
from heterolora.samples import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures",)  # fixtures: stack, http, model_root
SAMPLES = builtin_sample()[:16]


def body(stack: Stack, **over: Any) -> dict[str, Any]:
    base = {
        "model_id": stack.tiny,
        "samples": SAMPLES,
        "budget": {"trainable_params": 2000},
        "num_batches": 2,
        "batch_size": 4,
        "max_length": 48,  # the tiny BERT has 64 positions; its tokenizer works per character
    }
    return base | over


def error(response: httpx.Response) -> dict[str, Any]:
    assert set(response.json()) == {"error"}, response.json()
    return response.json()["error"]


def test_tiny_model_happy_path(stack: Stack, http: httpx.Client) -> None:
    start = time.perf_counter()
    r = http.post("/allocate", json=body(stack, seed=1))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status"] in ("queued", "running")
    assert r.json()["status_url"] == f"/jobs/{job_id}" == r.headers["Location"]
    job = wait_job(http, job_id)
    print(f"tiny-model job end to end: {time.perf_counter() - start:.2f}s")
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"fraction": 1.0, "phase": "done"}
    plan = job["plan"]
    assert plan["model"]["id"] == stack.tiny and plan["model"]["num_layers"] == 2
    assert plan["budget"]["limit"] == 2000 and 0 < plan["budget"]["used"] <= 2000
    assert len(plan["modules"]) == 12  # q k v o up down x 2 layers
    assert plan["settings"]["batches"] == 2
    times = [datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")]
    assert times == sorted(times)


@pytest.mark.slow
def test_minilm_happy_path(stack: Stack, http: httpx.Client) -> None:
    req = body(stack, model_id="minilm", budget={"like": {"r": 8, "types": ["q", "v"]}}, num_batches=4)
    job_id = http.post("/allocate", json=req).json()["job_id"]
    phases: set[str] = set()
    job = wait_job(http, job_id, until=lambda j: phases.add(j["progress"]["phase"]) or j["status"] == "succeeded")
    plan = job["plan"]
    assert plan["model"]["model_type"] == "bert" and plan["model"]["num_layers"] == 6
    assert plan["budget"]["limit"] == 8 * (384 + 384) * 12  # uniform r=8 on q and v of 6 layers
    assert 0 < plan["budget"]["used"] <= plan["budget"]["limit"]
    assert phases & {"loading model", "scoring 1/4", "scoring 2/4", "scoring 3/4", "scoring 4/4", "allocating"}


def test_request_dtype_loads_the_weights_in_it(stack: Stack, http: httpx.Client) -> None:
    """A request's dtype overrides the worker's (float32 here); it is part of the job's identity."""
    bf16 = http.post("/allocate", json=body(stack, seed=11, dtype="bfloat16")).json()["job_id"]
    default = http.post("/allocate", json=body(stack, seed=11)).json()["job_id"]
    assert bf16 != default
    assert wait_job(http, bf16)["plan"]["settings"]["weights_dtype"] == "bfloat16"
    assert wait_job(http, default)["plan"]["settings"]["weights_dtype"] == "float32"


def test_identical_requests_share_one_job_and_one_computation(stack: Stack, http: httpx.Client) -> None:
    first = http.post("/allocate", json=body(stack, seed=2))
    second = http.post("/allocate", json=body(stack, seed=2))
    for r in (first, second):  # 200 only if the (tiny) job already finished when the POST answered
        assert r.status_code == (200 if r.json()["status"] == "succeeded" else 202)
    job_id = first.json()["job_id"]
    assert second.json()["job_id"] == job_id
    plan = wait_job(http, job_id)["plan"]
    cached = http.post("/allocate", json=body(stack, seed=2))
    assert cached.status_code == 200
    assert cached.json()["job_id"] == job_id and cached.json()["plan"] == plan
    assert received(stack.worker_log, job_id) == 1
    other = http.post("/allocate", json=body(stack, seed=3))  # any option changes the key
    assert other.json()["job_id"] != job_id


def test_idempotency_key_header(stack: Stack, http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "pipeline-run-42"}
    first = http.post("/allocate", json=body(stack, seed=4), headers=headers)
    again = http.post("/allocate", json=body(stack, seed=4), headers=headers)
    assert first.json()["job_id"] == again.json()["job_id"]
    clash = http.post("/allocate", json=body(stack, seed=5), headers=headers)
    assert clash.status_code == 409
    assert error(clash)["code"] == "idempotency_key_reused"


def test_wait_holds_the_request_until_done(stack: Stack, http: httpx.Client) -> None:
    r = http.post("/allocate", params={"wait": 60}, json=body(stack, seed=6), timeout=70)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"


BAD_INPUTS = [
    ("unknown field", {"colour": "red"}, 422, "invalid_request", "colour"),
    ("no samples", {"samples": []}, 422, "invalid_request", "samples"),
    (
        "too many samples",
        {"samples": [{"text": "x", "label": 0}] * (MAX_SAMPLES + 1)},
        422,
        "invalid_config",
        "samples",
    ),
    ("blank text", {"samples": [{"text": "  ", "label": 0}]}, 422, "invalid_request", "samples.0.text"),
    ("text too long", {"samples": [{"text": "x" * 20_001, "label": 0}]}, 422, "invalid_request", "samples.0.text"),
    ("unknown sample key", {"samples": [{"text": "x", "lbl": 0}]}, 422, "invalid_request", "samples.0.lbl"),
    ("missing label", {"samples": [{"text": "a", "label": 1}, {"text": "b"}]}, 422, "invalid_data", "samples.1.label"),
    ("zero budget", {"budget": {"trainable_params": 0}}, 422, "invalid_budget", "budget"),
    ("unknown budget form", {"budget": {"percent": 3}}, 422, "invalid_budget", "budget"),
    ("unknown proxy", {"proxy": "magic"}, 422, "invalid_request", "proxy"),
    ("unknown task", {"task": "translation"}, 422, "invalid_request", "task"),
    ("unknown dtype", {"dtype": "int8"}, 422, "invalid_request", "dtype"),
    ("bad rank set", {"rank_set": [0, 4]}, 422, "invalid_request", "rank_set"),
    ("too many batches", {"num_batches": 5000}, 422, "invalid_request", "num_batches"),
    ("model not allowed", {"model_id": "evil/model"}, 403, "model_not_allowed", "model_id"),
    ("path outside model dirs", {"model_id": "/etc"}, 403, "model_not_allowed", "model_id"),
    ("path traversal", {"model_id": "{root}/../../etc"}, 403, "model_not_allowed", "model_id"),
    ("relative path", {"model_id": "./tiny-bert"}, 403, "model_not_allowed", "model_id"),
    ("not a model id", {"model_id": "a b"}, 422, "invalid_config", "model_id"),
]


@pytest.mark.parametrize(("case", "change", "status", "code", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input(
    stack: Stack, http: httpx.Client, case: str, change: dict, status: int, code: str, field: str
) -> None:
    change = {k: v.format(root=stack.model_root) if isinstance(v, str) else v for k, v in change.items()}
    r = http.post("/allocate", json=body(stack, **change))
    assert (r.status_code, error(r)["code"], error(r).get("field")) == (status, code, field), r.text
    assert error(r)["message"]


def test_wait_over_60_is_rejected(stack: Stack, http: httpx.Client) -> None:
    r = http.post("/allocate", params={"wait": 61}, json=body(stack))
    assert (r.status_code, error(r)["field"]) == (422, "wait")


def test_malformed_json_and_oversized_bodies(http: httpx.Client) -> None:
    r = http.post("/allocate", content=b"{not json", headers={"Content-Type": "application/json"})
    assert (r.status_code, error(r)["code"]) == (400, "invalid_json")
    # Bytes that are not UTF-8, and nesting past the parser's depth, were `http_400` before.
    for bad in (b'{"model_id": "\xff\xfe"}', b"[" * 100_000):
        r = http.post("/allocate", content=bad, headers={"Content-Type": "application/json"})
        assert (r.status_code, error(r)["code"]) == (400, "invalid_json"), bad[:20]
    big = b'{"model_id": "minilm", "samples": [{"text": "' + b"x" * MAX_BODY_BYTES + b'"}]}'
    r = http.post("/allocate", content=big, headers={"Content-Type": "application/json"})
    assert (r.status_code, error(r)["code"]) == (413, "payload_too_large")

    def chunks():  # no Content-Length: the cap applies while reading
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    r = http.post("/allocate", content=chunks(), headers={"Content-Type": "application/json"})
    assert (r.status_code, error(r)["code"]) == (413, "payload_too_large")


def test_auth(stack: Stack) -> None:
    with stack.api.client(key=None) as anon, stack.api.client(key="wrong-key-0123456789") as wrong:
        for client in (anon, wrong):
            r = client.post("/allocate", json=body(stack))
            assert (r.status_code, error(r)["code"]) == (401, "unauthorized")
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert client.get("/jobs/abc").status_code == 401
        assert anon.get("/healthz").json()["status"] == "ok"
        ready = anon.get("/readyz")
        assert ready.status_code == 200 and ready.json()["workers"] >= 1
        assert anon.get("/openapi.json").status_code == 200
    assert API_KEY in stack.env["HETEROLORA_API_KEYS"]


def test_unknown_ids_and_routes(http: httpx.Client) -> None:
    r = http.get("/jobs/0123456789abcdef")
    assert (r.status_code, error(r)["code"], error(r)["field"]) == (404, "job_not_found", "job_id")
    assert http.delete("/jobs/0123456789abcdef").status_code == 404
    assert error(http.get("/nowhere")) == {"code": "not_found", "message": "Not Found"}


@pytest.mark.parametrize(
    ("model_id", "code", "field", "says"),
    [
        ("acme/no-such-model", "model_not_found", "model_id", "cannot load model"),
        ("{root}/missing", "model_not_found", "model_id", "does not exist"),
        ("{tiny}", "invalid_budget", "budget", "not below the model's total"),
    ],
    ids=["hub id not cached", "local folder missing", "budget over model total"],
)
def test_jobs_that_raise_end_failed_with_code(
    stack: Stack, http: httpx.Client, model_id: str, code: str, field: str, says: str
) -> None:
    model_id = model_id.format(root=stack.model_root, tiny=stack.tiny)
    r = http.post("/allocate", json=body(stack, model_id=model_id, budget={"trainable_params": 10**9}))
    # 200 when the worker failed the job before the POST read it back (a missing model fails in ms)
    assert r.status_code == (200 if r.json()["status"] == "failed" else 202)
    job = wait_job(http, r.json()["job_id"])
    assert job["status"] == "failed" and "plan" not in job
    assert (job["error"]["code"], job["error"]["field"]) == (code, field)
    assert says in job["error"]["message"]
    retry = http.post("/allocate", json=body(stack, model_id=model_id, budget={"trainable_params": 10**9}))
    assert retry.json()["job_id"] != job["job_id"]  # a failed job does not pin its request


def test_unexpected_error_in_job_is_reported(stack: Stack, http: httpx.Client) -> None:
    broken = stack.model_root / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text((stack.model_root / "tiny-bert" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_text((stack.model_root / "tiny-bert" / name).read_text())
    job = wait_job(http, http.post("/allocate", json=body(stack, model_id=str(broken))).json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] in ("model_not_found", "internal_error")
    assert job["error"]["message"]


@pytest.mark.slow
def test_cancel_queued_and_running_jobs(stack: Stack, http: httpx.Client) -> None:
    slow = body(stack, model_id="minilm", samples=builtin_sample()[:64], num_batches=16, seed=7)
    running = http.post("/allocate", json=slow).json()["job_id"]
    queued = http.post("/allocate", json=body(stack, seed=8)).json()["job_id"]
    wait_job(http, running, until=lambda j: j["status"] == "running")
    r = http.delete(f"/jobs/{queued}")
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    assert http.delete(f"/jobs/{running}").json()["status"] == "cancelled"
    after = http.post("/allocate", json=body(stack, seed=9)).json()["job_id"]
    assert wait_job(http, after)["status"] == "succeeded"  # the worker is free again
    for job_id in (running, queued):
        job = http.get(f"/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and "plan" not in job
        assert job["finished_at"] >= job["created_at"]  # a cancelled job has ended
    log = stack.worker_log.read_text()
    assert f"heterolora.allocate[{queued}] succeeded" not in log
    assert f"heterolora.allocate[{running}] succeeded" not in log
    resubmit = http.post("/allocate", json=body(stack, seed=8))
    assert resubmit.json()["job_id"] != queued  # a cancelled job does not pin its request


def test_finished_jobs_cannot_be_cancelled_and_heatmap(stack: Stack, http: httpx.Client) -> None:
    job_id = http.post("/allocate", json=body(stack, seed=1)).json()["job_id"]
    wait_job(http, job_id)
    r = http.delete(f"/jobs/{job_id}")
    assert (r.status_code, error(r)["code"]) == (409, "job_finished")
    png = http.get(f"/jobs/{job_id}/heatmap.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


def test_openapi_has_examples_and_operation_ids(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {"/allocate", "/jobs/{job_id}", "/jobs/{job_id}/heatmap.png", "/healthz", "/readyz"} <= set(spec["paths"])
    assert spec["paths"]["/allocate"]["post"]["operationId"] == "allocate-allocate"
    assert spec["components"]["schemas"]["AllocateRequest"]["examples"][0]["model_id"] == "minilm"
    assert {"404", "409"} <= set(spec["paths"]["/jobs/{job_id}/heatmap.png"]["get"]["responses"])
    assert "429" in spec["paths"]["/allocate"]["post"]["responses"]
    assert http.get("/docs").status_code == 200
    # Site types are an enum, so a schema-valid request is never refused for them.
    types = spec["components"]["schemas"]["AllocateRequest"]["properties"]["types"]["anyOf"][0]["items"]
    assert types["enum"] == ["q", "k", "v", "o", "qkv", "gate", "up", "down"]
    like = spec["components"]["schemas"]["UniformSpec"]["properties"]["types"]["items"]
    assert like["enum"] == types["enum"]


def test_huge_labels_are_422_naming_the_sample(stack: Stack, http: httpx.Client) -> None:
    """A numeric label of 5,000 digits used to be `invalid_request` with no field and advice to
    call sys.set_int_max_str_digits."""
    samples = [{**s} for s in SAMPLES]
    samples[3]["label"] = "1" * 5000
    r = http.post("/allocate", json=body(stack, samples=samples))
    assert (r.status_code, error(r)["code"], error(r)["field"]) == (422, "invalid_data", "samples.3.label")
    assert "at most 256" in error(r)["message"] and "sys." not in error(r)["message"]


def test_options_and_405_list_every_method_of_the_path(http: httpx.Client) -> None:
    r = http.options("/jobs/0123")
    assert r.status_code == 204 and r.headers["Allow"] == "DELETE, GET, OPTIONS"  # was "GET"
    r = http.put("/jobs/0123")
    assert (r.status_code, error(r)["code"]) == (405, "method_not_allowed")
    assert r.headers["Allow"] == "DELETE, GET, OPTIONS"
    assert http.options("/allocate").headers["Allow"] == "OPTIONS, POST"


def test_cached_allocate_latency(stack: Stack, http: httpx.Client) -> None:
    """p50 of POST /allocate for a plan that is already known (served from Redis with 200)."""
    req = body(stack, seed=1)
    wait_job(http, http.post("/allocate", json=req).json()["job_id"])
    times = []
    for _ in range(50):
        t = time.perf_counter()
        assert http.post("/allocate", json=req).status_code == 200
        times.append(time.perf_counter() - t)
    p50 = sorted(times)[len(times) // 2]
    print(f"cached POST /allocate p50 over 50: {1000 * p50:.1f} ms")
    assert p50 < 1.0
