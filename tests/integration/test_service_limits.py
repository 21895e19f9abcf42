"""Load limits with real parts: Redis and the API (uvicorn), but no worker, so every job stays
queued and nothing here can finish early. Covers `?wait` without threads (and its cap), the
per-key rate limit, the queue-depth limit, the default body limit and sample sets stored once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devtools.stack import API_KEY, OTHER_KEY, Stack, metric, start_stack, stop_stack
from heterolora.samples import builtin_sample
from service.settings import DEFAULT_MAX_BODY_BYTES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest_plugins = ("stack_fixtures",)  # fixture: model_root
THIRD_KEY = "third-key-0123456789abcdef"
FOURTH_KEY = "fourth-key-0123456789abcdef"
MAX_WAITERS = 40
MAX_QUEUED = 6
RATE_PER_MINUTE = 100


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("limits"),
        model_root,
        worker=False,
        HETEROLORA_API_KEYS=f"team-a:{API_KEY},team-b:{OTHER_KEY},team-c:{THIRD_KEY},team-d:{FOURTH_KEY}",
        HETEROLORA_MAX_WAITERS=str(MAX_WAITERS),
        HETEROLORA_MAX_QUEUED_JOBS=str(MAX_QUEUED),
        HETEROLORA_RATE_LIMIT_PER_MINUTE=str(RATE_PER_MINUTE),
        HETEROLORA_MAX_BODY_BYTES=None,  # the default
        HETEROLORA_MAX_SAMPLES=None,
    )
    yield running
    stop_stack(running)


def body(seed: int = 0, **change: object) -> dict:
    return {"model_id": "minilm", "samples": builtin_sample()[:8], "num_batches": 2, "seed": seed, **change}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_wait_holds_no_thread_and_is_capped(idle: Stack) -> None:
    """50 concurrent ?wait=10 on a job that cannot finish: 40 wait, 10 get a plain 202 at once,
    and /healthz stays fast meanwhile (the old route slept in the thread pool: ~40 stalled it)."""

    async def scenario() -> tuple[list[tuple[int, float]], list[float], float]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=idle.api.url, headers=auth(API_KEY), limits=limits, timeout=60) as api:

            async def post() -> tuple[int, float]:
                started = time.perf_counter()
                r = await api.post("/allocate", params={"wait": 10}, json=body(seed=1))
                return r.status_code, time.perf_counter() - started

            waiters = [asyncio.create_task(post()) for _ in range(50)]

            async def waiting() -> float:
                return metric((await api.get("/metrics")).text, "heterolora_waiters")

            deadline = time.monotonic() + 30
            while await waiting() < MAX_WAITERS:  # the event: every slot taken
                assert time.monotonic() < deadline, "the waiters never registered"
                await asyncio.sleep(0.02)
            latencies = []
            for _ in range(100):
                started = time.perf_counter()
                assert (await api.get("/healthz")).status_code == 200
                latencies.append(time.perf_counter() - started)
            still_waiting = await waiting()
            return await asyncio.gather(*waiters), latencies, still_waiting

    answers, latencies, still_waiting = asyncio.run(scenario())
    p99 = sorted(latencies)[98]
    print(f"/healthz p99 with {MAX_WAITERS} requests waiting: {1000 * p99:.1f} ms")
    assert p99 < 0.2
    assert still_waiting == MAX_WAITERS  # they were all still held while /healthz answered
    assert all(status == 202 for status, _ in answers)
    held = [seconds for _, seconds in answers if seconds >= 9.5]
    assert len(held) == MAX_WAITERS  # the cap: the other 10 were answered at once
    assert metric(httpx.get(idle.api.url + "/metrics").text, "heterolora_waiters") == 0


def test_rate_limit_per_key(idle: Stack) -> None:
    with httpx.Client(base_url=idle.api.url, headers=auth(THIRD_KEY), timeout=30) as third:
        statuses = []
        # Fixed one-minute windows: 2 x limit + 1 requests exceed the limit in one window at least.
        for _ in range(2 * RATE_PER_MINUTE + 1):
            r = third.post("/allocate", json=body(seed=2))
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert statuses.count(202) >= RATE_PER_MINUTE
    with httpx.Client(base_url=idle.api.url, headers=auth(API_KEY)) as other:
        assert other.post("/allocate", json=body(seed=2)).status_code == 202  # another key is not limited


def test_invalid_bodies_count_against_the_rate(idle: Stack) -> None:
    """A key that floods /allocate with bodies that fail validation (422) is limited like one that
    submits: the rate is checked before the body is validated."""
    with httpx.Client(base_url=idle.api.url, headers=auth(FOURTH_KEY), timeout=30) as fourth:
        statuses = []
        for _ in range(2 * RATE_PER_MINUTE + 1):
            r = fourth.post("/allocate", json={"model_id": "minilm", "samples": []})
            statuses.append(r.status_code)
            if r.status_code != 422:
                break
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert set(statuses[:-1]) == {422} and len(statuses) - 1 >= RATE_PER_MINUTE


def test_sample_sets_are_stored_once(idle: Stack) -> None:
    client = redis.Redis.from_url(idle.redis.url, decode_responses=True)
    samples = [{"text": f"shared sample {i}", "label": i % 2} for i in range(8)]
    with httpx.Client(base_url=idle.api.url, headers=auth(API_KEY), timeout=30) as http:
        before = set(client.scan_iter("heterolora:samples:*"))
        for budget in (1000, 2000):  # two jobs, one sample set
            payload = {"model_id": "minilm", "samples": samples, "budget": {"trainable_params": budget}}
            assert http.post("/allocate", json=payload).status_code == 202
    added = set(client.scan_iter("heterolora:samples:*")) - before
    assert len(added) == 1
    for raw in client.lrange("gpu", 0, -1):  # queued task messages carry the hash, not the samples
        message = base64.b64decode(json.loads(raw)["body"]).decode()
        assert "shared sample" not in message and "sample set" not in message
    client.close()


def test_queue_depth_limit(idle: Stack) -> None:
    with httpx.Client(base_url=idle.api.url, headers=auth(OTHER_KEY), timeout=30) as http:
        depth = metric(http.get("/metrics").text, "heterolora_queue_depth")
        accepted = [http.post("/allocate", json=body(seed=100 + i)) for i in range(int(MAX_QUEUED - depth))]
        assert [r.status_code for r in accepted] == [202] * len(accepted)
        full = http.post("/allocate", json=body(seed=99))
        assert (full.status_code, full.json()["error"]["code"]) == (429, "queue_full")
        assert int(full.headers["Retry-After"]) >= 1
        known = http.post("/allocate", json=body(seed=100))  # an identical request needs no new job
        assert known.status_code == 202 and known.json()["job_id"] == accepted[0].json()["job_id"]
        assert metric(http.get("/metrics").text, "heterolora_queue_depth") == MAX_QUEUED


def test_body_limit_default_and_memory_under_a_flood(idle: Stack) -> None:
    """Eight concurrent 30 MB bodies (the issue's flood took the API from 67 MB to 1.3 GB)."""
    before, peak_before = idle.api.rss_mb()
    flood = b'{"model_id": "minilm", "samples": [' + b'{"text": "x", "label": 0},' * 1_200_000 + b"]}"

    async def send() -> list[int]:
        async with httpx.AsyncClient(base_url=idle.api.url, headers=auth(API_KEY), timeout=60) as api:

            async def one() -> int:
                try:
                    r = await api.post("/allocate", content=flood, headers={"Content-Type": "application/json"})
                except httpx.TransportError:  # the server may close while the client still sends
                    return 413
                return r.status_code

            return await asyncio.gather(*(one() for _ in range(8)))

    assert asyncio.run(send()) == [413] * 8
    after, peak = idle.api.rss_mb()
    print(f"API memory: {before:.0f} MB before, {after:.0f} MB after, peak {peak:.0f} MB")
    assert after - before < 50 and peak - max(before, peak_before) < 100
    # What a plan needs still fits: 4096 short samples.
    rows = [{"text": f"a short sample sentence number {i}", "label": i % 2} for i in range(4096)]
    assert len(json.dumps({"model_id": "minilm", "samples": rows})) < DEFAULT_MAX_BODY_BYTES
    with httpx.Client(base_url=idle.api.url, headers=auth(API_KEY), timeout=30) as http:
        r = http.post("/allocate", json={"model_id": "minilm", "samples": rows})
        assert r.status_code in (202, 429), r.text  # accepted, or the queue is full: never 413
