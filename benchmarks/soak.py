"""Soak benchmark: ten minutes of mixed traffic against the real stack on loopback (redis-server,
one Celery worker, uvicorn; devtools/stack.py), with one worker kill and one Redis restart in the
middle. Writes benchmarks/results/soak.{json,md}.

- Traffic (CLIENTS threads, each a bounded loop until the deadline): POST /allocate with and
  without `?wait`, repeats of known requests, GET and DELETE /jobs/{id}, the init file, the
  heatmap, /readyz, /healthz, /metrics, and invalid bodies.
- Faults: at 35 % of the run the worker's whole process group gets SIGKILL mid-job and a new
  worker starts (as a supervisor would); at 65 % Redis stops for REDIS_DOWN_S and starts again on
  its own data (append-only file). 503s are expected only inside these windows.
- Afterwards: every accepted job must end (jobs lost: 0), no request thread may still be busy
  (threads stuck: 0), and API and worker memory are compared with the start.

    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.soak [--minutes 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import signal
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devtools.stack import (
    API_KEY,
    Stack,
    deliveries,
    save_tiny_bert,
    start_stack,
    start_worker,
    stop,
    stop_stack,
    wait_until,
)
from heterolora.samples import builtin_sample

CLIENTS = 4
THINK_S = 0.1  # between one client's requests: the host is two shared cores
MAX_OPEN_JOBS = 12  # new jobs only while fewer than this are unfinished
REDIS_DOWN_S = 5
SETTLE_S = 300  # how long accepted jobs get to end after the traffic stops
SETTINGS = {"HETEROLORA_MAX_QUEUED_JOBS": "1000", "HETEROLORA_MAX_SAMPLES": None, "HETEROLORA_MAX_BODY_BYTES": None}
TINY = {"num_batches": 2, "batch_size": 4, "max_length": 48, "budget": {"trainable_params": 2000}}
INVALID = [
    {"model_id": "minilm"},  # no samples
    {"model_id": "minilm", "samples": [{"text": "x"}], "budget": {"trainable_params": -5}},
    {"model_id": "minilm", "samples": [{"text": "x", "label": "1" * 5000}]},
    {"model_id": "minilm", "samples": [{"text": "x"}], "types": ["zz"]},
]


@dataclass
class Shared:
    """What the clients share: the jobs they made, the answers they got, the fault windows."""

    stack: Stack
    start: float
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> "plan", "init" or "cancel"
    bodies: dict[str, tuple[int, bool]] = field(default_factory=dict)  # job id -> (seed, init)
    done: set[str] = field(default_factory=set)
    answers: list[tuple[str, int, float, float]] = field(default_factory=list)  # route, status, at, ms
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    killed_job: str | None = None  # the job running when the worker was killed
    seed: int = 0

    def record(self, route: str, status: int, started: float) -> None:
        with self.lock:
            self.answers.append((route, status, started, 1000 * (time.monotonic() - started)))

    def next_seed(self) -> int:
        with self.lock:
            self.seed += 1
            return self.seed


def request(shared: Shared, http: httpx.Client, route: str, method: str, url: str, **kw: Any) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response = http.request(method, url, **kw)
    except httpx.HTTPError:
        shared.record(route, 0, started)  # no answer within the client's timeout
        return None
    shared.record(route, response.status_code, started)
    return response


def body(stack: Stack, seed: int, init: bool = False) -> dict[str, Any]:
    extra = {"init": "gradient", "init_variant": "lora_ga"} if init else {}  # lora_ga: always an init file
    return {"model_id": stack.tiny, "samples": builtin_sample()[:8], "seed": seed, **TINY, **extra}


ACTIONS = {  # action -> weight
    "new": 3, "wait": 1, "repeat": 3, "get": 10, "cancel": 1, "artifact": 2, "heatmap": 1,
    "readyz": 3, "healthz": 3, "metrics": 1, "invalid": 2,
}  # fmt: skip


def client(shared: Shared, number: int) -> None:
    rng = random.Random(number)
    http = shared.stack.api.client()
    http.timeout = httpx.Timeout(30)
    while time.monotonic() < shared.deadline:
        try:
            act(shared, http, rng)
        except Exception as exc:  # a client bug must show in the results, not end the client quietly
            shared.record(f"client error {type(exc).__name__}", -1, time.monotonic())
        time.sleep(THINK_S)
    http.close()


def act(shared: Shared, http: httpx.Client, rng: random.Random) -> None:
    with shared.lock:
        known = list(shared.jobs)
        finished = [j for j in known if j in shared.done]
        open_jobs = len(known) - len(finished)
    action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
    if action in ("new", "wait", "cancel") and open_jobs >= MAX_OPEN_JOBS:
        action = "get"
    if action in ("repeat", "artifact", "heatmap") and not finished:
        action = "get"
    if action == "get" and not known:
        action = "healthz"
    if action in ("new", "wait", "cancel", "repeat"):
        if action == "repeat":  # a request already planned: answered 200 from the job store
            seed, init = shared.bodies[rng.choice(finished)]
        else:
            seed, init = shared.next_seed(), action == "new" and rng.random() < 0.3
        params = {"wait": 5} if action == "wait" else {}
        new = body(shared.stack, seed, init)
        route = "POST /allocate?wait=5" if params else "POST /allocate"
        r = request(shared, http, route, "POST", "/allocate", json=new, params=params)
        if r is not None and r.status_code in (200, 202) and action != "repeat":
            job_id = r.json()["job_id"]
            with shared.lock:
                shared.jobs[job_id] = "cancel" if action == "cancel" else ("init" if init else "plan")
                shared.bodies[job_id] = (seed, init)
            if action == "cancel":
                request(shared, http, "DELETE /jobs/{id}", "DELETE", f"/jobs/{job_id}")
    elif action == "get":
        job_id = rng.choice(known)
        r = request(shared, http, "GET /jobs/{id}", "GET", f"/jobs/{job_id}")
        if r is not None and r.status_code == 200 and r.json()["status"] in ("succeeded", "failed", "cancelled"):
            with shared.lock:
                shared.done.add(job_id)
    elif action == "artifact":
        with shared.lock:
            inits = [j for j in finished if shared.jobs[j] == "init"] or finished
        url = f"/jobs/{rng.choice(inits)}/adapter.safetensors"
        request(shared, http, "GET /jobs/{id}/adapter.safetensors", "GET", url)
    elif action == "heatmap":
        request(shared, http, "GET /jobs/{id}/heatmap.png", "GET", f"/jobs/{rng.choice(finished)}/heatmap.png")
    elif action in ("readyz", "healthz", "metrics"):
        request(shared, http, f"GET /{action}", "GET", f"/{action}")
    else:
        request(shared, http, "POST /allocate (invalid)", "POST", "/allocate", json=rng.choice(INVALID))


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(total / 1024, 1)


def group_pids(leader: int) -> list[int]:
    """The worker's main process and its pool children (one process group)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader:  # fields: state, ppid, pgrp, ...
            pids.append(int(stat.parent.name))
    return pids


def running_job(shared: Shared, http: httpx.Client) -> str | None:
    with shared.lock:
        open_jobs = [j for j in shared.jobs if j not in shared.done]
    for job_id in open_jobs:
        r = http.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {API_KEY}"})
        if r.status_code == 200 and r.json()["status"] == "running":
            return job_id
    return None


def faults(shared: Shared, minutes: float) -> None:
    """The worker kill at 35 % and the Redis restart at 65 % of the run."""
    stack, start = shared.stack, shared.start
    probe = httpx.Client(base_url=stack.api.url, timeout=5)
    time.sleep(max(0.0, start + 0.35 * 60 * minutes - time.monotonic()))
    assert stack.worker is not None
    with contextlib.suppress(TimeoutError):  # mid-job: wait (bounded) for a job that runs
        shared.killed_job = wait_until(lambda: running_job(shared, probe), 60, "a running job")
    began = time.monotonic()
    stop(stack.worker, signal.SIGKILL)
    stack.worker = start_worker(stack.env, stack.worker_log, "w2")
    # /readyz reuses its answer for a second: first see the killed worker missing, then the new one.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: probe.get("/readyz").status_code == 503, 30, "the killed worker missed")
    wait_until(lambda: probe.get("/readyz").status_code == 200, 180, "a new worker ready")
    shared.windows.append(("worker kill", began, time.monotonic() + 2))
    time.sleep(max(0.0, start + 0.65 * 60 * minutes - time.monotonic()))
    began = time.monotonic()
    stack.redis.stop()
    time.sleep(REDIS_DOWN_S)
    stack.redis.start()
    wait_until(lambda: probe.get("/readyz").status_code == 200, 180, "ready after the Redis restart")
    shared.windows.append(("redis restart", began, time.monotonic() + 2))
    probe.close()


def settle(shared: Shared) -> dict[str, Any]:
    """Wait (bounded) for every accepted job to end; count the lost ones."""
    http = shared.stack.api.client()
    final: dict[str, str] = {}
    deadline = time.monotonic() + SETTLE_S
    for job_id in shared.jobs:
        status = "unknown"
        while time.monotonic() < deadline:
            r = http.get(f"/jobs/{job_id}")
            status = r.json()["status"] if r.status_code == 200 else f"http {r.status_code}"
            if status == "failed":
                error = r.json()["error"]
                status = f"failed {error['code']}: {error['message'][:160]}"
            if status.startswith(("succeeded", "failed", "cancelled")) or r.status_code == 404:
                break
            time.sleep(0.5)
        final[job_id] = status
    http.close()
    expected = {
        job_id: ("cancelled", "succeeded") if kind == "cancel" else ("succeeded",)
        for job_id, kind in shared.jobs.items()
    }
    lost = sorted(j for j, status in final.items() if status not in expected[j])
    return {
        "accepted": len(final),
        "by_status": dict(Counter(status.split(":")[0] for status in final.values())),
        "lost": len(lost),
        "lost_jobs": {j: final[j] for j in lost[:20]},
        "final": final,
    }


def summary(shared: Shared) -> dict[str, Any]:
    def inside(at: float, ms: float) -> bool:  # the request overlaps a fault window
        return any(at <= end and at + ms / 1000 >= begin for _, begin, end in shared.windows)

    by_route: dict[str, list[float]] = defaultdict(list)
    statuses: Counter[str] = Counter()
    route_statuses: dict[str, Counter[str]] = defaultdict(Counter)
    outside_5xx = Counter()
    for route, status, at, ms in shared.answers:
        by_route[route].append(ms)
        statuses[str(status)] += 1
        route_statuses[route][str(status)] += 1
        if (status >= 500 or status == 0) and not inside(at, ms):
            outside_5xx[f"{route} {status}"] += 1
    routes = {}
    for route, times in sorted(by_route.items()):
        times.sort()
        routes[route] = {
            "requests": len(times),
            "p50_ms": round(times[len(times) // 2], 1),
            "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 1),
            "statuses": dict(sorted(route_statuses[route].items())),
        }
    return {
        "requests": len(shared.answers),
        "by_status": dict(sorted(statuses.items())),
        "http_500": statuses.get("500", 0),
        "http_503": statuses.get("503", 0),
        "no_answer": statuses.get("0", 0),
        "client_errors": statuses.get("-1", 0),
        "errors_outside_fault_windows": dict(outside_5xx),
        "routes": routes,
        "fault_windows_s": [
            {"fault": name, "at_s": round(begin - shared.start, 1), "seconds": round(end - begin, 1)}
            for name, begin, end in shared.windows
        ],
    }


def report(results: dict[str, Any]) -> str:
    traffic, jobs, memory = results["traffic"], results["jobs"], results["memory_mb"]
    lines = [
        "# Soak benchmark",
        "",
        f"Command: `{results['command']}` ({results['machine']}).",
        "",
        f"{results['minutes']} minutes, {CLIENTS} clients on loopback; one worker SIGKILLed mid-job and one "
        "Redis restart (stop, 5 s, start on its own data) in the middle.",
        "",
        "| what | result |",
        "|---|---|",
        f"| requests | {traffic['requests']:,} |",
        f"| by status | {', '.join(f'{k} x {v:,}' for k, v in traffic['by_status'].items())} |",
        f"| 500s (must be 0) | {traffic['http_500']} |",
        f"| 503s / no answer / client errors | {traffic['http_503']} / {traffic['no_answer']} / "
        f"{traffic['client_errors']} |",
        f"| 5xx or no answer outside the fault windows (must be none) | "
        f"{traffic['errors_outside_fault_windows'] or 'none'} |",
        f"| jobs accepted / lost (must be 0) | {jobs['accepted']} / {jobs['lost']} ({jobs['by_status']}) |",
        f"| request threads busy at the end (must be 0) | {results['threads_stuck_at_end']} |",
        f"| the job running at the worker kill: final status, deliveries | {results['jobs'].get('killed_job')} |",
        f"| jobs re-queued by an expired lease / sweep errors | {results['leases']['jobs_requeued_by_lease']} / "
        f"{results['leases']['sweep_errors']} |",
        f"| API RSS start / end | {memory['api_start']} / {memory['api_end']} MB |",
        f"| worker RSS start / end (main + pool) | {memory['worker_start']} / {memory['worker_end']} MB |",
        "",
        "| fault | at | window (s) |",
        "|---|---|---|",
        *(f"| {w['fault']} | {w['at_s']} s | {w['seconds']} |" for w in traffic["fault_windows_s"]),
        "",
        "| route | requests | p50 ms | p99 ms | statuses |",
        "|---|---|---|---|---|",
        *(
            f"| {route} | {r['requests']:,} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{', '.join(f'{k} x {v}' for k, v in r['statuses'].items())} |"
            for route, r in traffic["routes"].items()
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_tiny_bert(folder / "models" / "tiny-bert")
        stack = start_stack(folder, folder / "models", persist=True, **SETTINGS)
        try:
            assert stack.api.proc is not None and stack.worker is not None
            with stack.api.client() as http:  # warm: the worker loaded the model, the API drew a heatmap
                first = http.post("/allocate", params={"wait": 60}, json=body(stack, 0, init=True)).json()
                assert first["status"] == "succeeded", first
                for path in ("heatmap.png", "adapter.safetensors"):
                    http.get(f"/jobs/{first['job_id']}/{path}").raise_for_status()
                http.get("/metrics").raise_for_status()
            start_api, start_worker_mb = rss_mb([stack.api.proc.pid]), rss_mb(group_pids(stack.worker.pid))
            now = time.monotonic()
            shared = Shared(stack, start=now, deadline=now + 60 * args.minutes)
            threads = [threading.Thread(target=client, args=(shared, i)) for i in range(CLIENTS)]
            threads.append(threading.Thread(target=faults, args=(shared, args.minutes)))
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60 * args.minutes + 600)
            jobs = settle(shared)
            health = httpx.get(stack.api.url + "/healthz", timeout=10).json()
            final, killed = jobs.pop("final"), shared.killed_job
            if killed:  # its final state, and how often it was delivered (2: the killed run and one more)
                jobs["killed_job"] = {"status": final[killed], **deliveries(stack.redis.url, killed)}
            logs = stack.api.log.read_text(errors="replace") + stack.worker_log.read_text(errors="replace")
            leases = {
                "jobs_requeued_by_lease": logs.count("lease lapsed: job re-queued"),
                "sweep_errors": logs.count("lease sweep failed"),
            }
            memory = {
                "api_start": start_api,
                "api_end": rss_mb([stack.api.proc.pid]),
                "worker_start": start_worker_mb,
                "worker_end": rss_mb(group_pids(stack.worker.pid)),
            }
        finally:
            stop_stack(stack)
    command = "PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.soak"
    command += f" --minutes {args.minutes:g}" if args.minutes != 10 else ""
    results = {
        "command": command,
        "machine": f"{platform.machine()}, {platform.python_version()}, shared 2-core CPU host",
        "minutes": args.minutes,
        "clients": CLIENTS,
        "traffic": summary(shared),
        "jobs": jobs,
        "threads_stuck_at_end": health["threads"]["busy"],
        "leases": leases,
        "memory_mb": memory,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "soak.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
