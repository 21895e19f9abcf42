"""heterolora.planner: every route (library, CLI, the service's runner) gives the same plan, and
one plan discovers the model's sites once."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import heterolora
from heterolora import search_space, sites
from heterolora.caches import ModelCache
from heterolora.cli import main
from heterolora.config import AllocationConfig
from heterolora.plans import Plan
from heterolora.samples import builtin_sample
from heterolora.schemas import AllocateRequest
from service.jobs.run import run_request

OPTIONS = {"budget": {"trainable_params": 60_000}, "num_batches": 2, "proxy": "snip", "seed": 3}


def canonical(plan: Plan) -> str:
    return json.dumps(plan.fingerprint(), sort_keys=True)


def test_every_route_gives_a_byte_identical_plan(tmp_path) -> None:
    rows = builtin_sample()[:24]
    library = heterolora.plan("minilm", rows, AllocationConfig(**OPTIONS), device="cpu")

    data, out = tmp_path / "rows.jsonl", tmp_path / "plan.json"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["plan", "--data", str(data), "--out", str(out), "--device", "cpu", "--budget-params", "60000"]
    args += ["--num-batches", "2", "--proxy", "snip", "--seed", "3"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    cli = Plan.load(out)

    request = AllocateRequest.model_validate({"model_id": "minilm", "samples": rows, **OPTIONS})
    cache = ModelCache(size=1)
    service = run_request(request, cache=cache, device="cpu")  # the Celery task's and the embedded queue's call
    cached = run_request(request, cache=cache, device="cpu")  # model and scores from the cache

    assert canonical(library) == canonical(cli) == canonical(service) == canonical(cached)
    assert (cache.hits, cache.misses) == (1, 1) and cached.timings["scoring_s"] == 0.0
    assert library.labels == [0, 1] and library.budget.used <= 60_000


@pytest.mark.parametrize("options", [{}, {"shortcuts": True, "types": ["q", "v"], "layers": [0, 1]}])
def test_one_plan_discovers_the_sites_once(monkeypatch, options: dict) -> None:
    walks: list[int] = []
    real = search_space.walk_sites

    def counted(model):
        walks.append(1)
        return real(model)

    monkeypatch.setattr(search_space, "walk_sites", counted)
    monkeypatch.setattr(sites, "walk_sites", counted)
    plan = heterolora.plan("minilm", builtin_sample()[:8], device="cpu", num_batches=1, **options)
    assert len(walks) == 1
    assert plan.modules and plan.model.num_layers == 6


def test_scores_with_init_gradients_are_not_kept_between_jobs() -> None:
    """A gradient-init plan's scores hold the scoring gradients (or sketches); the worker's cache
    must not keep them alive after the job, so the same request is scored again."""
    rows = builtin_sample()[:16]
    request = AllocateRequest.model_validate(
        {"model_id": "minilm", "samples": rows, **OPTIONS, "proxy": "rank_energy", "init": "gradient"}
    )
    cache = ModelCache(size=1)
    first = run_request(request, cache=cache, device="cpu")
    again = run_request(request, cache=cache, device="cpu")
    assert (cache.hits, cache.misses) == (1, 1)  # the model is reused ...
    assert again.timings["scoring_s"] > 0 and not cache._scores  # ... its gradients are not
    assert again.init.sha256 == first.init.sha256  # and the init is the same
