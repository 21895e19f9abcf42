"""A job's planning call, for the Celery worker and the embedded queue: AllocateRequest -> Plan
through heterolora.plan, so every route plans the same way; models preloaded into the worker's
cache; JobCancelled, which the progress callback raises to stop a cancelled job."""

from __future__ import annotations

from heterolora.caches import ModelCache, cache_key
from heterolora.loading import default_device, load_model
from heterolora.planner import plan
from heterolora.plans import Plan
from heterolora.proxies.context import Progress
from heterolora.schemas import AllocateRequest


class JobCancelled(Exception):
    """Raised from the progress callback to stop a job that was cancelled."""


def preload(
    cache: ModelCache,
    model_ids: list[str],
    *,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
) -> None:
    """Load models into the cache before the first job (as for a 2-label seq-cls request), so the
    first plan on a fresh worker skips the import and load time."""
    device = device or default_device()
    for model_id in model_ids:
        loaded = load_model(model_id, "seq-cls", num_labels=2, dtype=dtype, device=device, device_map=device_map)
        cache.put(cache_key(model_id, "seq-cls", 2, dtype, device, device_map), loaded)


def run_request(
    request: AllocateRequest,
    *,
    cache: ModelCache,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Plan for `request` on the worker's device (or `device_map`), in the request's dtype or else
    the worker's. `progress(fraction, phase)` may raise JobCancelled to stop the job."""
    samples = [s.model_dump() for s in request.samples]
    config, dtype = request.to_config(), request.dtype or dtype
    return plan(
        request.model_id, samples, config, cache=cache, progress=progress, device=device, dtype=dtype,
        device_map=device_map,
    )  # fmt: skip
