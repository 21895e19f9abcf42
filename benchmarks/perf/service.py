"""Service sections, through the real stack: redis-server, `heterolora worker` (Celery, prefork,
one process) and `heterolora serve` (uvicorn), started with the integration tests' harness
(devtools/stack.py) so the benchmark runs exactly what the tests run.

- cache_ratio: end-to-end time of a plan on a model the worker has cached ÷ one it must load.
- cached_post_p50/p99_ms: POST of a request whose plan is already known (200 on loopback).
- new_job_overhead_ms: a new tiny-model job, end to end, minus the engine's own time.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.perf.timing import median, percentile, rounded
from benchmarks.perf.workloads import sample_rows
from devtools.stack import save_tiny_bert, start_stack, stop_stack

POLL_S = 0.01  # client-side polling for the timed jobs: 10 ms, far below any job's length
TERMINAL = ("succeeded", "failed", "cancelled")
JOB_TIMEOUT_S = 600


def tiny_body(model_id: str, seed: int) -> dict[str, Any]:
    from heterolora.samples import builtin_sample

    return {
        "model_id": model_id,
        "samples": builtin_sample()[:16],
        "budget": {"trainable_params": 2000},
        "num_batches": 2,
        "batch_size": 4,
        "max_length": 48,  # the tiny BERT has 64 positions
        "seed": seed,
    }


def minilm_body(seed: int, num_batches: int, data: str) -> dict[str, Any]:
    rows = sample_rows(data)[: 8 * num_batches]
    return {"model_id": "minilm", "samples": rows, "num_batches": num_batches, "batch_size": 8, "seed": seed}


def post(http: httpx.Client, body: dict[str, Any], wait: float = 0) -> httpx.Response:
    headers = {"Idempotency-Key": uuid.uuid4().hex}  # a fresh key per call, as the SDK sends
    r = http.post("/allocate", json=body, params={"wait": wait} if wait else None, headers=headers)
    r.raise_for_status()
    return r


def run_job(http: httpx.Client, body: dict[str, Any], wait: float = 0) -> tuple[float, dict[str, Any]]:
    """(seconds from POST to a finished job seen by the client, the job). wait > 0 lets the
    service hold the POST (?wait=S); otherwise the client polls every POLL_S."""
    start = time.perf_counter()
    job = post(http, body, wait).json()
    deadline = start + JOB_TIMEOUT_S
    while job["status"] not in TERMINAL and time.perf_counter() < deadline:
        time.sleep(POLL_S)
        job = http.get(job["status_url"]).json()
    elapsed = time.perf_counter() - start
    if job["status"] != "succeeded":
        raise RuntimeError(f"benchmark job did not succeed: {job}")
    return elapsed, job


REBUDGET = {"like": {"r": 4, "types": ["q", "v"]}}


def cache_ratio(http: httpx.Client, model: Any, evict: Any, rounds: int) -> dict[str, Any]:
    """With a cache of one model, a job on `evict` makes the next `model` job a miss; the one after
    it a hit. The very first job also pays the worker's first imports (reported apart)."""
    cold, _ = run_job(http, model(10_000))
    jobs: dict[str, list[dict[str, float]]] = {"miss": [], "hit": [], "rebudget": []}
    for i in range(rounds):
        run_job(http, evict(20_000 + i))
        jobs["miss"].append(job_times(*run_job(http, model(2 * i))))
        jobs["hit"].append(job_times(*run_job(http, model(2 * i + 1))))
        # The miss's request with another budget: the worker reuses its scores and only allocates.
        jobs["rebudget"].append(job_times(*run_job(http, model(2 * i) | {"budget": REBUDGET})))
    ms = {kind: _medians(rows) for kind, rows in jobs.items()}
    return {
        "ratio": rounded(ms["hit"]["e2e_ms"] / ms["miss"]["e2e_ms"]),
        "rebudget_ratio": rounded(ms["rebudget"]["e2e_ms"] / ms["miss"]["e2e_ms"]),
        "rebudget_ms": ms["rebudget"],
        "miss_ms": ms["miss"],
        "hit_ms": ms["hit"],
        "first_job_fresh_worker_ms": rounded(1000 * cold, 1),
        "ratio_vs_fresh_worker": rounded(ms["hit"]["e2e_ms"] / (1000 * cold)),
        "rounds": rounds,
    }


def cached_post(http: httpx.Client, body: dict[str, Any], count: int) -> dict[str, Any]:
    run_job(http, body)  # make sure the plan is known
    for _ in range(10):  # warm the connection and the API's code paths
        post(http, body)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        r = post(http, body)
        times.append(1000 * (time.perf_counter() - start))
        if r.status_code != 200 or r.json().get("plan") is None:
            raise RuntimeError(f"a known plan was not returned at once: {r.status_code}")
    return {"p50_ms": rounded(median(times), 1), "p99_ms": rounded(percentile(times, 99), 1), "requests": count}


def _ms_between(a: str, b: str) -> float:
    return 1000 * (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def job_times(e2e_s: float, job: dict[str, Any]) -> dict[str, float]:
    """Where a job's time went, in ms: end to end, the engine (compute_plan), the rest (overhead);
    of the rest, waiting in the queue and the worker's time outside the engine (loading, tokenising)."""
    engine_ms = 1000 * job["plan"]["timings"]["total_s"]
    return {
        "e2e_ms": 1000 * e2e_s,
        "engine_ms": engine_ms,
        "overhead_ms": 1000 * e2e_s - engine_ms,
        "queue_ms": _ms_between(job["created_at"], job["started_at"]),
        "worker_outside_engine_ms": _ms_between(job["started_at"], job["finished_at"]) - engine_ms,
    }


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: rounded(median([r[k] for r in rows]), 1) for k in rows[0]}


def new_job_overhead(http: httpx.Client, body: Any, count: int) -> dict[str, Any]:
    """Tiny-model jobs (model already cached), alternately through POST ?wait=30 and client polling."""
    run_job(http, body(30_000))  # load the tiny model into the worker's cache
    rows: dict[str, list[dict[str, float]]] = {"wait": [], "poll": []}
    for i in range(count):
        for j, mode in enumerate(rows):
            rows[mode].append(job_times(*run_job(http, body(40_000 + 2 * i + j), wait=30 if mode == "wait" else 0)))
    summary = {mode: _medians(rs) for mode, rs in rows.items()}
    return {"overhead_ms": summary["wait"]["overhead_ms"], "by_mode": summary, "jobs_per_mode": count}


def service_sections(quick: bool, data: str, rounds: int, requests: int, jobs: int, num_batches: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="heterolora-perf-") as tmp:
        root = Path(tmp) / "models"
        tiny_a = str(save_tiny_bert(root / "tiny-a"))
        tiny_b = str(save_tiny_bert(root / "tiny-b"))
        extra = {
            "HETEROLORA_MODEL_CACHE_SIZE": "1",
            "HETEROLORA_MAX_SAMPLES": "4096",
            "HETEROLORA_MAX_BODY_BYTES": str(32 * 2**20),
        }
        stack = start_stack(Path(tmp), root, **extra)
        try:
            with stack.api.client() as http:
                if quick:
                    model = lambda seed: tiny_body(tiny_a, seed)  # noqa: E731
                else:
                    model = lambda seed: minilm_body(seed, num_batches, data)  # noqa: E731
                cache = cache_ratio(http, model, lambda seed: tiny_body(tiny_b, seed), rounds)
                known = cached_post(http, model(0), requests)
                overhead = new_job_overhead(http, lambda seed: tiny_body(tiny_a, seed), jobs)
        finally:
            stop_stack(stack)
    cache["model"] = "tiny BERT" if quick else f"minilm, K = {num_batches} batches of 8 pairs from {data or 'built-in'}"
    return {"cache": cache, "cached_post": known, "new_job": overhead}
