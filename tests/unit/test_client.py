"""The SDK against httpx.MockTransport: error mapping, retries, idempotency-key reuse, polling,
duck-typed samples. (The real service is exercised in tests/integration/test_service_sdk.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from heterolora.client import (
    APIConnectionError,
    BadRequest,
    Client,
    Conflict,
    InternalServerError,
    JobFailed,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Timeout,
    Unauthorized,
    _client,
    _retry,
)

PLAN = {
    "model": {"id": "m", "architecture": "Bert", "model_type": "bert", "num_layers": 1},
    "task": "seq-cls",
    "proxy": "grad_norm",
    "seed": 0,
    "budget": {"kind": "trainable_params", "request": {"trainable_params": 10}, "limit": 10, "used": 8},
    "modules": [],
    "peft": {"r": 8, "lora_alpha": 16, "target_modules": [], "rank_pattern": {}, "alpha_pattern": {}},
}
SAMPLES = [{"text": "a", "label": 1}]


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": "j1", "status": status, "status_url": "/jobs/j1", **extra}


def error(status: int, code: str, field: str | None = None, headers: dict | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", **({"field": field} if field else {})}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record waits instead of sleeping (time.sleep is the only thing faked)."""
    slept: list[float] = []
    monkeypatch.setattr(_client.time, "sleep", slept.append)
    return slept


def client_for(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> tuple[Client, list]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return Client("http://svc", transport=httpx.MockTransport(record), **kwargs), seen


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (413, BadRequest),
        (422, BadRequest),
        (500, InternalServerError),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type) -> None:
    client, seen = client_for(lambda r: error(status, "some_code", field="samples.0.label"))
    with pytest.raises(cls) as exc:
        client.job("j1")
    assert (exc.value.status, exc.value.code, exc.value.field) == (status, "some_code", "samples.0.label")
    assert len(seen) == 1  # not retried


def test_503_is_retried_with_the_same_idempotency_key(no_sleep: list[float]) -> None:
    answers = iter([error(503, "broker_unavailable", headers={"Retry-After": "2"}), error(503, "x")])
    client, seen = client_for(lambda r: next(answers, httpx.Response(202, json=job("queued"))))
    status = client.submit("minilm", SAMPLES, {"trainable_params": 10})
    assert status.status == "queued" and len(seen) == 3
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert no_sleep[0] == 2.0  # Retry-After honoured
    body = json.loads(seen[0].content)
    assert body == {"model_id": "minilm", "samples": SAMPLES, "budget": {"trainable_params": 10}}


def test_gives_up_after_max_retries() -> None:
    client, seen = client_for(lambda r: error(503, "no_workers"), max_retries=1)
    with pytest.raises(ServiceUnavailable) as exc:
        client.job("j1")
    assert exc.value.code == "no_workers" and len(seen) == 2


def test_connection_errors_are_retried_then_raised() -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    client, _ = client_for(refuse, max_retries=2)
    with pytest.raises(APIConnectionError, match="cannot reach http://svc"):
        client.job("j1")
    assert len(calls) == 3

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(Timeout):
        client_for(slow, max_retries=0)[0].job("j1")


def test_plan_polls_with_backoff_until_succeeded(no_sleep: list[float]) -> None:
    states = iter([job("running", progress={"fraction": 0.5, "phase": "scoring 1/2"}), job("running")])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=job("queued"))
        return httpx.Response(200, json=next(states, job("succeeded", plan=PLAN)))

    client, seen = client_for(handler, api_key="k" * 20)
    plan = client.plan("minilm", SAMPLES, proxy="snip", seed=3)
    assert plan.budget.used == 8
    assert [r.method for r in seen] == ["POST", "GET", "GET", "GET"]
    assert no_sleep == pytest.approx([0.2, 0.3, 0.45])
    assert seen[0].headers["Authorization"] == "Bearer " + "k" * 20
    assert json.loads(seen[0].content)["proxy"] == "snip"


def test_failed_and_cancelled_jobs_raise_job_failed() -> None:
    failed = job("failed", error={"code": "model_not_found", "message": "nope", "field": "model_id"})
    client, _ = client_for(lambda r: httpx.Response(200, json=failed))
    with pytest.raises(JobFailed) as exc:
        client.wait("j1")
    assert (exc.value.code, exc.value.field, exc.value.job.status) == ("model_not_found", "model_id", "failed")
    client, _ = client_for(lambda r: httpx.Response(200, json=job("cancelled")))
    with pytest.raises(JobFailed) as exc:
        client.wait("j1")
    assert exc.value.code == "cancelled"


def test_wait_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = client_for(lambda r: httpx.Response(200, json=job("running")))
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(_client.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(Timeout, match="still running after 12s") as exc:
        client.wait("j1", timeout=12)
    assert exc.value.job is not None and exc.value.job.status == "running"


class Frame:
    """pandas is not installed here: the two members the SDK uses, as pandas defines them."""

    columns = ("text", "label", "extra")

    def to_dict(self, orient: str) -> list[dict]:
        assert orient == "records"
        return [{"text": "a", "label": 1.0, "extra": 3}, {"text": "b", "label": float("nan"), "extra": 4}]


class Dataset:
    """datasets is not installed here: the two members the SDK uses, as datasets defines them."""

    column_names = ("text", "text_pair", "label")

    def to_list(self) -> list[dict]:
        return [{"text": "a", "text_pair": "b", "label": "pos"}]


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (Frame(), [{"text": "a", "label": 1}, {"text": "b"}]),
        (Dataset(), [{"text": "a", "text_pair": "b", "label": "pos"}]),
        ((row for row in SAMPLES), SAMPLES),
    ],
    ids=["dataframe", "dataset", "iterable"],
)
def test_samples_are_duck_typed(samples: Any, expected: list[dict]) -> None:
    client, seen = client_for(lambda r: httpx.Response(202, json=job("queued")))
    client.submit("minilm", samples)
    assert json.loads(seen[0].content)["samples"] == expected


def test_backoff_is_capped_and_jittered() -> None:
    assert _retry.backoff(0, "9999") == _retry.RETRY_AFTER_MAX_S
    assert 0.25 <= _retry.backoff(0) <= 0.5
    assert _retry.backoff(10) <= _retry.BACKOFF_MAX_S


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROLORA_BASE_URL", "http://env-svc:9000")
    monkeypatch.setenv("HETEROLORA_API_KEY", "from-env-0123456789")
    client = Client()
    assert str(client._http.base_url) == "http://env-svc:9000"
    assert client._http.headers["Authorization"] == "Bearer from-env-0123456789"


def test_client_does_not_import_torch() -> None:
    code = "import sys, heterolora.client; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_wire_code_maps_to_one_class() -> None:
    """The SDK's classes come from heterolora.error_codes, the table the service answers with."""
    from heterolora.client import RateLimited, ServiceUnavailable
    from heterolora.error_codes import ERROR_CODES

    expected = {
        "bad_request": BadRequest,
        "unauthorized": Unauthorized,
        "forbidden": PermissionDenied,
        "not_found": NotFound,
        "conflict": Conflict,
        "rate_limited": RateLimited,
        "unavailable": ServiceUnavailable,
        "internal": InternalServerError,
    }
    for code, (status, kind) in ERROR_CODES.items():
        if status == 0:
            continue  # job-only codes arrive inside a JobStatus, not as an HTTP error
        client, _ = client_for(lambda r, status=status, code=code: error(status, code))
        with pytest.raises(expected[kind]) as exc:
            client.job("j1")
        assert exc.value.code == code and exc.value.status == status


def test_engine_error_codes_are_wire_codes() -> None:
    import heterolora.errors as engine_errors
    from heterolora.error_codes import ERROR_CODES

    classes = [c for c in vars(engine_errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    codes = {c.code for c in classes if hasattr(c, "code")}
    assert codes and codes <= set(ERROR_CODES), codes - set(ERROR_CODES)
