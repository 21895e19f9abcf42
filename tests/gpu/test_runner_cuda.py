"""The worker's job runner on CUDA: device picked automatically, dtype option, model cache hit.
Skipped without a GPU (run on a lent device: `pytest tests/gpu -m gpu`)."""

from __future__ import annotations

import pytest
import torch

from heterolora.caches import ModelCache
from heterolora.samples import builtin_sample
from heterolora.schemas import AllocateRequest
from service.jobs.run import run_request

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_minilm_plans_on_cuda_and_reuses_the_loaded_model(dtype: str | None) -> None:
    request = AllocateRequest(
        model_id="minilm", samples=builtin_sample()[:64], budget={"trainable_params": 100_000}, num_batches=8
    )
    cache = ModelCache(size=1)
    phases: list[str] = []
    first = run_request(request, cache=cache, dtype=dtype, progress=lambda f, p: phases.append(p))
    (key,) = cache._items
    assert key[-1] == "cuda" and key[-2] == dtype
    assert next(cache._items[key].model.parameters()).is_cuda
    second = run_request(request, cache=cache, dtype=dtype)
    assert (cache.hits, cache.misses) == (1, 1)
    assert second.fingerprint() == first.fingerprint()  # same request and seed, same plan
    assert 0 < first.budget.used <= 100_000
    assert phases[0] == "loading model" and "scoring 8/8" in phases and phases[-1] == "done"
