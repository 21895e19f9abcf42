"""What GET /metrics (service/api/routes/metrics.py) exports, and the per-request log line.

- Request metrics (by route template, method, status and API key name) live in this process.
  With several API processes (`--workers N`), set PROMETHEUS_MULTIPROC_DIR to an empty folder:
  prometheus_client's multiprocess mode then adds up every process (`heterolora serve` empties
  the folder at start).
- Job metrics come from the job store (service.jobs.stats), where workers on any host add them up.
- Queue depth and the requests held by ?wait are read at scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heterolora._deprecated import moved_name
from service.jobs.queue import JobQueue
from service.jobs.stats import StoreCollector
from service.logs import event

REQUESTS = CollectorRegistry(auto_describe=True)
REQUEST_COUNT = Counter(
    "heterolora_http_requests",
    "HTTP requests by route template, method, status and API key name.",
    ["route", "method", "status", "key"],
    registry=REQUESTS,
)
REQUEST_SECONDS = Histogram(
    "heterolora_http_request_seconds",
    "HTTP request latency by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REQUESTS,
)


class _Live(Collector):
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("heterolora_queue_depth", "Jobs waiting for a worker.", value=self.queue.queued())
        yield GaugeMetricFamily(
            "heterolora_waiters", "Requests held by ?wait in this API process.", value=self.queue.waiters
        )


class _Requests(Collector):
    def collect(self) -> Iterator[Any]:
        yield from REQUESTS.collect()


def scrape(queue: JobQueue) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(_Requests())
    registry.register(StoreCollector(queue.store))
    registry.register(_Live(queue))
    return generate_latest(registry)


class RequestMetrics:
    """Counts and times every HTTP request and logs one line for it (key name, never the key)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            state = scope.get("state", {})
            key = state.get("key_name", "-")
            job_id = state.get("job_id") or scope.get("path_params", {}).get("job_id")
            REQUEST_COUNT.labels(route, scope["method"], str(status), key).inc()
            REQUEST_SECONDS.labels(route, scope["method"]).observe(seconds)
            line = {"method": scope["method"], "route": route, "status": status, "key": key}
            event("request", **line, **({"job_id": job_id} if job_id else {}), ms=round(1000 * seconds, 1))


def __getattr__(name: str) -> object:
    return moved_name(__name__, name)
