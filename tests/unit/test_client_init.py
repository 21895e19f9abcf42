"""The SDK downloads a plan's init file and refuses one that does not match plan.init (issue 14).
The service is an httpx.MockTransport here (the real one: tests/integration/test_service_artifacts.py)."""

from __future__ import annotations

import httpx
import pytest
from test_client import PLAN as ZERO_INIT_PLAN  # the same plan without init

from heterolora.client import Client
from heterolora.errors import PlanError
from heterolora.init.format import sha256_hex

FILE = b"safetensors bytes standing in for A and B"
PLAN = {
    **ZERO_INIT_PLAN,
    "init": {
        "variant": "lora_ga",
        "direction": "ArB2r",
        "scale": "stable",
        "stable_gamma": 16,
        "recommended_learning_rate": 1e-3,
        "base_correction": True,
        "num_batches": 2,
        "seed": 0,
        "sha256": sha256_hex(FILE),
        "size": len(FILE),
        "modules": 1,
    },
}


def _client(served: bytes) -> tuple[Client, list[str]]:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/allocate":
            return httpx.Response(
                200, json={"job_id": "j1", "status": "succeeded", "status_url": "/jobs/j1", "plan": PLAN}
            )
        assert request.url.path == "/jobs/j1/adapter.safetensors"
        return httpx.Response(200, content=served, headers={"ETag": f'"{sha256_hex(served)}"'})

    return Client("http://svc", transport=httpx.MockTransport(handler)), paths


def test_client_plan_downloads_and_verifies_the_init_file() -> None:
    client, paths = _client(FILE)
    plan = client.plan("m", [{"text": "a", "label": 1}], init="gradient")
    assert plan.init_data == FILE and plan.recommended_learning_rate == 1e-3
    assert paths == ["/allocate", "/jobs/j1/adapter.safetensors"]


@pytest.mark.parametrize("served", [FILE[:-1] + b"X", FILE + b"!"], ids=["changed", "longer"])
def test_client_refuses_a_tampered_init_file(served: bytes) -> None:
    client, _ = _client(served)
    with pytest.raises(PlanError) as err:
        client.plan("m", [{"text": "a", "label": 1}], init="gradient")
    assert err.value.field in ("init.sha256", "init.size")
