"""Fault benchmark: the service under the faults of issue 11, with real parts (redis-server, a
Celery worker, uvicorn; devtools/stack.py). Writes benchmarks/results/faults.{json,md}.

1. Jobs under worker faults: tiny-model jobs, one MiniLM job whose whole worker is SIGKILLed
   mid-run (re-delivered after the visibility timeout), and one job that kills its worker process
   every time (devtools.crashing_worker). Counts submitted, completed, failed, lost (must be 0)
   and re-delivered.
2. `/healthz` latency while 50 `?wait=10` requests hold on a job that cannot finish (no worker).
3. API memory (RSS) before and after 8 concurrent 30 MB bodies.

    PYTHONPATH=. .venv/bin/python -m benchmarks.faults [--jobs 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from devtools.crashing_worker import CRASH_MODEL
from devtools.stack import (
    API_KEY,
    Stack,
    metric,
    save_tiny_bert,
    start_stack,
    start_worker,
    stop,
    stop_stack,
    wait_job,
)
from heterolora.samples import builtin_sample

LIMITS = {
    "HETEROLORA_VISIBILITY_TIMEOUT_S": "24",
    "HETEROLORA_TIME_LIMIT_S": "22",
    "HETEROLORA_SOFT_TIME_LIMIT_S": "20",
    "HETEROLORA_MAX_QUEUED_JOBS": "1000",
    "HETEROLORA_MAX_WAITERS": "64",
    "HETEROLORA_MAX_BODY_BYTES": None,  # the defaults
    "HETEROLORA_MAX_SAMPLES": None,
}
TINY = {"num_batches": 2, "batch_size": 4, "max_length": 48, "budget": {"trainable_params": 2000}}
WAITERS = 50
FLOOD_BODIES, FLOOD_MB = 8, 30


def worker_faults(stack: Stack, http: httpx.Client, jobs: int) -> dict[str, Any]:
    samples = builtin_sample()[:8]
    tiny = [
        http.post("/allocate", json={"model_id": stack.tiny, "samples": samples, "seed": i, **TINY})
        for i in range(jobs)
    ]
    slow = {"model_id": "minilm", "samples": builtin_sample()[:32], "num_batches": 8, "batch_size": 4, "seed": 7}
    killed = http.post("/allocate", json=slow).json()["job_id"]
    crash = http.post("/allocate", json={"model_id": CRASH_MODEL, "samples": samples, **TINY}).json()["job_id"]
    wait_job(http, killed, until=lambda j: j["progress"]["phase"].startswith("scoring "))
    assert stack.worker is not None
    stop(stack.worker, signal.SIGKILL)
    stack.worker = start_worker(stack.env, stack.worker_log, "w2", crashing=True)
    ids = [r.json()["job_id"] for r in tiny] + [killed, crash]
    final = {job_id: wait_job(http, job_id, timeout=300) for job_id in ids}
    expected = {job_id: "succeeded" for job_id in ids[:-1]} | {crash: "failed"}
    statuses = {job_id: job["status"] for job_id, job in final.items()}
    text = http.get("/metrics").text
    return {
        "submitted": len(ids),
        "completed": sum(s == "succeeded" for s in statuses.values()),
        "failed_worker_lost": sum(job.get("error", {}).get("code") == "worker_lost" for job in final.values()),
        "lost": sum(statuses[j] != expected[j] for j in ids),
        "redelivered": metric(text, "heterolora_worker_lost_redeliveries_total"),
        "killed_job": statuses[killed],
    }


async def healthz_under_wait(url: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as api:
        body = {"model_id": "minilm", "samples": builtin_sample()[:8], "seed": 99}
        waiters = [asyncio.create_task(api.post("/allocate", params={"wait": 10}, json=body)) for _ in range(WAITERS)]
        while metric((await api.get("/metrics")).text, "heterolora_waiters") < WAITERS:
            await asyncio.sleep(0.02)
        latencies = []
        for _ in range(200):
            started = time.perf_counter()
            (await api.get("/healthz")).raise_for_status()
            latencies.append(1000 * (time.perf_counter() - started))
        answers = await asyncio.gather(*waiters)
    latencies.sort()
    return {
        "waiters": WAITERS,
        "healthz_requests": len(latencies),
        "healthz_p50_ms": round(latencies[len(latencies) // 2], 1),
        "healthz_p99_ms": round(latencies[int(0.99 * len(latencies)) - 1], 1),
        "wait_answers": sorted({r.status_code for r in answers}),
    }


async def body_flood(stack: Stack) -> dict[str, Any]:
    before, _ = stack.api.rss_mb()
    flood = b'{"model_id": "minilm", "samples": [' + b'{"text": "x", "label": 0},' * (FLOOD_MB * 2**20 // 26) + b"]}"

    async def chunks() -> Any:
        for start in range(0, len(flood), 2**20):
            yield flood[start : start + 2**20]

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.api.url, headers=headers, timeout=120) as api:

        async def one(chunked: bool) -> int:
            try:
                return (await api.post("/allocate", content=chunks() if chunked else flood)).status_code
            except httpx.TransportError:  # the server closed while the client was still sending
                return 413

        statuses = await asyncio.gather(*(one(i % 2 == 0) for i in range(FLOOD_BODIES)))
    after, peak = stack.api.rss_mb()
    return {
        "bodies": FLOOD_BODIES,
        "body_mb": round(len(flood) / 2**20, 1),
        "statuses": sorted(set(statuses)),
        "api_rss_mb_before": round(before),
        "api_rss_mb_after": round(after),
        "api_peak_rss_mb": round(peak),
    }


def report(results: dict[str, Any], command: str) -> str:
    jobs, wait, flood = results["worker_faults"], results["healthz_under_wait"], results["body_flood"]
    return "\n".join(
        [
            "# Fault benchmark",
            "",
            f"Command: `{command}` ({results['machine']}).",
            "",
            "| what | result |",
            "|---|---|",
            f"| jobs submitted / completed / failed `worker_lost` | {jobs['submitted']} / {jobs['completed']} / "
            f"{jobs['failed_worker_lost']} |",
            f"| jobs lost (must be 0) | {jobs['lost']} |",
            f"| re-deliveries after a worker died | {jobs['redelivered']:.0f} "
            "(1 for the SIGKILLed worker, 3 for the crashing job) |",
            f"| `/healthz` p50 / p99 with {wait['waiters']} `?wait=10` held | {wait['healthz_p50_ms']} / "
            f"{wait['healthz_p99_ms']} ms |",
            f"| API RSS before / after / peak, {flood['bodies']} x {flood['body_mb']} MB bodies | "
            f"{flood['api_rss_mb_before']} / {flood['api_rss_mb_after']} / {flood['api_peak_rss_mb']} MB "
            f"(answers {flood['statuses']}) |",
            "",
            "For reference, issue 11 measured the code before the fix (not re-run here): a job that killed its",
            "worker was handed out forever, ~40 `?wait=8` requests stalled `/healthz` for 7-9 s, and eight",
            "29.7 MB bodies took the API from 67 MB to a 1.31 GB peak.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="tiny-model jobs besides the two faulty ones")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_tiny_bert(folder / "models" / "tiny-bert")
        stack = start_stack(folder, folder / "models", crashing=True, **LIMITS)
        try:
            with stack.api.client() as http:
                results: dict[str, Any] = {"worker_faults": worker_faults(stack, http, args.jobs)}
            assert stack.worker is not None
            stop(stack.worker)  # nothing consumes now: a new job cannot finish while requests wait
            stack.worker = None
            results["healthz_under_wait"] = asyncio.run(healthz_under_wait(stack.api.url))
            results["body_flood"] = asyncio.run(body_flood(stack))
        finally:
            stop_stack(stack)
    results["machine"] = f"{platform.machine()}, {platform.python_version()}, shared 2-core CPU host"
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.faults" + (f" --jobs {args.jobs}" if args.jobs != 20 else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps({"command": command, **results}, indent=2) + "\n")
    (args.out / "faults.md").write_text(report(results, command))
    print(report(results, command))


if __name__ == "__main__":
    main()
