"""Job metrics that outlive the process that measured them.

Workers run on other hosts and in pool processes that come and go, so job metrics (final status
and error code, phase durations, model-cache hits, worker-lost re-deliveries) are added up in the
job store (Redis hashes under heterolora:stats:, or memory in single-machine mode). GET /metrics
exports them through `StoreCollector`, next to the API process's own request metrics: one scrape
target for the whole service, no port to open on GPU hosts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from service.jobs.records import STATS_COUNTERS, seconds_key
from service.jobs.store import Store

PHASES = ("queue", "load", "score", "allocate", "total")
BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
NEVER = 0  # counters never expire


class JobStats:
    """What a job run adds to the counters (worker or embedded queue)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        field = "|".join([name, *(f"{k}={v}" for k, v in sorted(labels.items()))])
        self.store.incr(STATS_COUNTERS, field, amount, ttl_s=NEVER)

    def observe(self, phase: str, seconds: float) -> None:
        key = seconds_key(phase)
        bucket = next((b for b in BUCKETS_S if seconds <= b), math.inf)
        self.store.incr(key, f"le={bucket}", ttl_s=NEVER)
        self.store.incr(key, "sum", seconds, ttl_s=NEVER)


def _labels(field: str) -> tuple[str, dict[str, str]]:
    name, *pairs = field.split("|")
    return name, dict(pair.partition("=")[::2] for pair in pairs)


COUNTERS = {
    "jobs_finished": ("Jobs that ended, by final status and error code.", ("status", "code")),
    "model_cache_hits": ("Jobs whose model was already loaded in the worker.", ()),
    "model_cache_misses": ("Jobs that loaded their model.", ()),
    "worker_lost_redeliveries": ("Deliveries of a job whose earlier worker died on it.", ()),
}


class StoreCollector(Collector):
    """Exports the job counters and phase histograms kept in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        counters = self.store.counts(STATS_COUNTERS)
        for name, (doc, label_names) in COUNTERS.items():
            family = CounterMetricFamily(f"heterolora_{name}", doc, labels=list(label_names))
            for field, value in counters.items():
                counter, labels = _labels(field)
                if counter == name:
                    family.add_metric([labels.get(k, "") for k in label_names], value)
            if not label_names and not family.samples:
                family.add_metric([], 0.0)
            yield family
        family = HistogramMetricFamily(
            "heterolora_job_phase_seconds",
            "Job time by phase: queue (created to started), load, score, allocate, total.",
            labels=["phase"],
        )
        for phase in PHASES:
            fields = self.store.counts(seconds_key(phase))
            running, buckets = 0.0, []
            for bound in (*BUCKETS_S, math.inf):
                running += fields.get(f"le={bound}", 0.0)
                buckets.append(("+Inf" if bound == math.inf else str(bound), running))
            family.add_metric([phase], buckets, fields.get("sum", 0.0))
        yield family
