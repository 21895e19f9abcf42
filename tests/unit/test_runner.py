"""service.jobs.run and heterolora.caches: the LRU model cache, and a cached second run giving the same plan."""

from __future__ import annotations

from typing import Any

from heterolora.caches import ModelCache
from heterolora.samples import builtin_sample
from heterolora.schemas import AllocateRequest
from service.jobs.run import run_request


def test_lru_order_and_counts() -> None:
    cache = ModelCache(size=2)
    models: dict[str, Any] = {name: object() for name in "abc"}
    keys = {name: (name, "seq-cls", 2, None, "cpu") for name in "abc"}
    cache.put(keys["a"], models["a"])
    cache.put(keys["b"], models["b"])
    assert cache.get(keys["a"]) is models["a"]  # a is now the most recent
    cache.put(keys["c"], models["c"])  # evicts b
    assert cache.get(keys["b"]) is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 1)
    cache.discard(keys["a"])
    assert cache.get(keys["a"]) is None


def test_second_plan_reuses_the_loaded_model() -> None:
    request = AllocateRequest(
        model_id="minilm", samples=builtin_sample()[:8], budget={"trainable_params": 50_000}, num_batches=1
    )
    cache = ModelCache(size=1)
    phases: list[str] = []
    first = run_request(request, cache=cache, device="cpu", progress=lambda f, p: phases.append(p))
    cache._scores.clear()  # score again on the cached model
    second = run_request(request, cache=cache, device="cpu")
    assert (cache.hits, cache.misses) == (1, 1)
    assert list(cache._items) == [("minilm", "seq-cls", 2, None, "cpu")]
    assert second.fingerprint() == first.fingerprint()  # scoring left the cached model unchanged
    assert phases == ["loading model", "scoring", "scoring 1/1", "allocating", "done"]


def test_a_new_budget_reuses_the_scores() -> None:
    base = {"model_id": "minilm", "samples": builtin_sample()[:16], "num_batches": 2}
    cache = ModelCache(size=1)
    run_request(AllocateRequest(**base, budget={"trainable_params": 50_000}), cache=cache, device="cpu")
    phases: list[str] = []
    bigger = AllocateRequest(**base, budget={"trainable_params": 120_000}, normalize="type")
    reused = run_request(bigger, cache=cache, device="cpu", progress=lambda f, p: phases.append(p))
    assert phases == ["loading model", "allocating", "done"]  # no scoring pass ran
    cache._scores.clear()
    fresh = run_request(bigger, cache=cache, device="cpu")
    assert reused.fingerprint() == fresh.fingerprint()
    assert 0.95 * 120_000 <= reused.budget.used <= 120_000
    other_seed = run_request(
        AllocateRequest(**base, budget={"trainable_params": 120_000}, seed=1), cache=cache, device="cpu"
    )
    assert [m.score for m in other_seed.modules] != [m.score for m in fresh.modules]


def test_preload_makes_the_first_job_a_cache_hit() -> None:
    from service.jobs.run import preload

    cache = ModelCache(size=2)
    preload(cache, ["minilm"], device="cpu")
    request = AllocateRequest(model_id="minilm", samples=builtin_sample()[:8], num_batches=1)
    plan = run_request(request, cache=cache, device="cpu")
    assert (cache.hits, cache.misses) == (1, 0)
    fresh = run_request(request, cache=ModelCache(size=1), device="cpu")
    assert plan.fingerprint() == fresh.fingerprint()  # a preloaded head is the same seeded head
