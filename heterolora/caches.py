"""ModelCache: loaded models (LRU) and their last proxy scores, shared by the jobs of one worker
process. heterolora.planner takes it as an optional argument; without one every plan loads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from heterolora.loading import LoadedModel
from heterolora.scoring import SiteScores

CacheKey = tuple[str, str, int, str | None, str]  # model id, task, num_labels, dtype, device or "device_map=auto"


def cache_key(
    model: str, task: str, num_labels: int, dtype: str | None, device: str, device_map: str | None
) -> CacheKey:
    """Models differ by id, task, head size, dtype and placement (a device, or a device map)."""
    return (model, task, num_labels, dtype, f"device_map={device_map}" if device_map else device)


class ModelCache:
    """Least-recently-used loaded models, keyed by (model id, task, num_labels, dtype, device).
    A second plan on the same model skips loading; the engine restores weights after scoring.
    It also keeps the last proxy scores per model, so a plan that differs from an earlier one
    only in its budget or allocation options skips scoring too. Scores made for a gradient init
    are not kept: they carry the scoring pass's gradients (dense up to `scoring_memory_mb`, or the
    sketches, on the model's device), which would stay allocated between jobs."""

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

    def load(self, key: CacheKey, load: Callable[[], LoadedModel]) -> LoadedModel:
        """The cached model for `key`, else `load()`'s, kept for the next plan."""
        loaded = self.get(key)
        if loaded is None:
            loaded = load()
            self.put(key, loaded)
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
        if scored.gradients is not None:
            return  # a plan with init="gradient" is scored afresh (see the class docstring)
        with self._lock:
            if key in self._items:
                entries = self._scores.setdefault(key, OrderedDict())
                entries[score_id] = scored
                while len(entries) > self.SCORES_PER_MODEL:
                    entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
