"""Run one AllocateRequest: load the model (through an LRU cache), build batches, compute the plan.
Shared by the Celery worker and the service's embedded mode, so both behave the same."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from heterolora.api import prepare
from heterolora.data import label_map, normalize_samples, num_labels_of
from heterolora.engine import SiteScores, check_budget, compute_plan, score_key, score_sites, scoring_share
from heterolora.errors import HeteroLoraError
from heterolora.loading import LoadedModel, default_device, load_model
from heterolora.plans import Plan
from heterolora.proxies import get_proxy
from heterolora.proxies.context import Progress
from heterolora.schemas import AllocateRequest

CacheKey = tuple[str, str, int, str | None, str]
LOADING_SHARE = 0.1  # progress share of model loading; the engine reports the rest


class JobCancelled(Exception):
    """Raised from the progress callback to stop a job that was cancelled."""


class ModelCache:
    """Least-recently-used loaded models, keyed by (model id, task, num_labels, dtype, device).
    A second plan on the same model skips loading; the engine restores weights after scoring.
    It also keeps the last proxy scores per model, so a plan that differs from an earlier one
    only in its budget or allocation options skips scoring too."""

    SCORES_PER_MODEL = 8

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._items: OrderedDict[CacheKey, LoadedModel] = OrderedDict()
        self._scores: dict[CacheKey, OrderedDict[str, SiteScores]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> LoadedModel | None:
        with self._lock:
            loaded = self._items.get(key)
            if loaded is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return loaded

    def put(self, key: CacheKey, loaded: LoadedModel) -> None:
        with self._lock:
            self._items[key] = loaded
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                old, _ = self._items.popitem(last=False)
                self._scores.pop(old, None)

    def discard(self, key: CacheKey) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._scores.pop(key, None)

    def scores(self, key: CacheKey, score_id: str) -> SiteScores | None:
        """Cached scores, marked as costing no scoring time in the job that reuses them."""
        with self._lock:
            found = self._scores.get(key, {}).get(score_id)
        return None if found is None else replace(found, scoring_s=0.0)

    def put_scores(self, key: CacheKey, score_id: str, scored: SiteScores) -> None:
        with self._lock:
            if key in self._items:
                entries = self._scores.setdefault(key, OrderedDict())
                entries[score_id] = scored
                while len(entries) > self.SCORES_PER_MODEL:
                    entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def cache_key(request: AllocateRequest, rows: list[dict[str, Any]], dtype: str | None, device: str) -> CacheKey:
    num_labels = 0
    if request.task == "seq-cls":
        needs = get_proxy(request.proxy).needs_labels
        num_labels = num_labels_of(label_map(rows, required=needs))
    return (request.model_id, request.task, num_labels, dtype, device)


def preload(cache: ModelCache, model_ids: list[str], *, device: str | None = None, dtype: str | None = None) -> None:
    """Load models into the cache before the first job (as for a 2-label seq-cls request), so the
    first plan on a fresh worker skips the import and load time."""
    device = device or default_device()
    for model_id in model_ids:
        loaded = load_model(model_id, "seq-cls", num_labels=2, dtype=dtype, device=device)
        cache.put((model_id, "seq-cls", 2, dtype, device), loaded)


def run_request(
    request: AllocateRequest,
    *,
    cache: ModelCache,
    device: str | None = None,
    dtype: str | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Plan for `request`. `progress(fraction, phase)` may raise JobCancelled to stop the job."""
    report: Progress = progress or (lambda f, p: None)
    device = device or default_device()
    config = request.to_config()
    rows = normalize_samples([s.model_dump() for s in request.samples])
    key = cache_key(request, rows, dtype, device)
    report(0.0, "loading model")
    cached = cache.get(key)
    loaded, batches = prepare(request.model_id, rows, config, device=device, dtype=dtype, loaded=cached)
    if cached is None:
        cache.put(key, loaded)
    # Same model, revision, sample and scoring options: reuse the scores, only allocate again.
    score_id = hashlib.sha256(json.dumps([loaded.revision, rows, score_key(config)]).encode()).hexdigest()
    scaled = _scaled(report)
    try:
        scored = cache.scores(key, score_id)
        if scored is None:
            check_budget(loaded.model, config)  # reject impossible budgets before the expensive part
            scaled(0.0, "scoring")
            scored = score_sites(loaded.model, batches, config, scoring_share(scaled))
            cache.put_scores(key, score_id, scored)
        return compute_plan(
            loaded.model,
            batches,
            config,
            model_id=request.model_id,
            revision=loaded.revision,
            progress=scaled,
            scored=scored,
        )
    except HeteroLoraError:
        raise  # rejected input: raised before the model was touched
    except BaseException:
        cache.discard(key)  # an interrupted run may leave the model half-restored
        raise


def _scaled(report: Progress) -> Callable[[float, str], None]:
    return lambda f, phase: report(LOADING_SHARE + (1 - LOADING_SHARE) * f, phase)
