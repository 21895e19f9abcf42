"""Single-machine mode: `heterolora serve` without HETEROLORA_REDIS_URL runs jobs in-process,
with the same API semantics. No Redis, no worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.stack import API_KEY, Api, env_for, wait_job
from heterolora.client import Client, JobFailed
from heterolora.data import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("devtools.stack",)  # fixture: model_root


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Api]:
    running = Api(env_for(None, model_root), tmp_path_factory.mktemp("embedded") / "api.log").start()
    yield running
    running.stop()


def test_embedded_happy_path_and_idempotency(api: Api, model_root: Path) -> None:
    tiny = str(model_root / "tiny-bert")
    req = {
        "model_id": tiny,
        "samples": builtin_sample()[:16],
        "budget": {"trainable_params": 2000},
        "num_batches": 2,
        "batch_size": 4,
        "max_length": 48,
    }
    with api.client() as http:
        ready = http.get("/readyz").json()
        assert ready == {"status": "ready", "mode": "embedded", "broker": "in-process", "workers": 1}
        first = http.post("/allocate", json=req)
        second = http.post("/allocate", json=req)
        assert first.status_code == 202 and second.json()["job_id"] == first.json()["job_id"]
        job = wait_job(http, first.json()["job_id"])
        assert job["status"] == "succeeded" and job["progress"] == {"fraction": 1.0, "phase": "done"}
        assert job["plan"]["model"]["id"] == tiny and 0 < job["plan"]["budget"]["used"] <= 2000
        cached = http.post("/allocate", json=req)
        assert cached.status_code == 200 and cached.json()["plan"] == job["plan"]
        missing = http.get("/jobs/0123456789abcdef")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        anon = httpx.post(api.url + "/allocate", json=req)
        assert anon.status_code == 401


def test_embedded_failures_and_cancel(api: Api) -> None:
    with Client(api.url, api_key=API_KEY) as client:
        with pytest.raises(JobFailed) as failed:
            client.plan("acme/missing", builtin_sample()[:8], num_batches=1)
        assert failed.value.code == "model_not_found"
        slow = client.submit("minilm", builtin_sample()[:32], num_batches=8, batch_size=4, seed=31)
        assert client.cancel(slow.job_id).status == "cancelled"
        with pytest.raises(JobFailed) as cancelled:
            client.wait(slow.job_id, timeout=60)
        assert cancelled.value.code == "cancelled"
        assert client.job(slow.job_id).status == "cancelled"
