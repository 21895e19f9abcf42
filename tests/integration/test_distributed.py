"""Distributed planning with real processes over gloo (devtools/ranks.py starts them as torchrun
would): two ranks on 4 batches each plan exactly what one process plans on all 8, for tiny BERT and
LLaMA models, exact and streamed scoring, gradient inits; a rank that dies or disagrees ends the
plan with a clear error and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load

from devtools.ranks import DIED, build, launch
from heterolora.config import AllocationConfig
from heterolora.distributed import Group
from heterolora.engine import compute_plan
from heterolora.plans import Plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BATCHES = 8
BUDGET = {"budget": {"trainable_params": 3000}}
JOBS = {
    "bert": {
        "arch": "bert",
        "batches": BATCHES,
        "configs": [
            {"proxy": "rank_energy", "scoring": "exact", "init": "gradient", **BUDGET},
            {"proxy": "grad_norm", "scoring": "stream", **BUDGET},
            {"proxy": "synflow", **BUDGET},  # not shardable: every rank scores it whole
        ],
    },
    "llama": {
        "arch": "llama",
        "task": "causal-lm",
        "batches": BATCHES,
        "configs": [
            {"proxy": "rank_energy", "scoring": "stream", "init": "gradient", "init_variant": "gora", **BUDGET},
            {"proxy": "snip", "scoring": "stream", "scoring_memory_mb": 1, **BUDGET},
        ],
    },
}


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def _same_init(expected: Plan, got: Plan) -> None:
    want, have = load(expected.init_data), load(got.init_data)
    assert sorted(want) == sorted(have)
    for key, tensor in want.items():
        scale = tensor.abs().max().clamp(min=1e-30)
        assert float((tensor - have[key]).abs().max() / scale) < 1e-5, key


@pytest.mark.parametrize("arch", sorted(JOBS))
def test_two_ranks_on_four_batches_plan_like_one_process_on_eight(arch: str, tmp_path: Path) -> None:
    job: dict[str, Any] = JOBS[arch]
    outcomes = launch(2, job, tmp_path)
    assert [o.returncode for o in outcomes] == [0, 0], outcomes[0].log[-3000:] + outcomes[1].log[-3000:]
    model, batches = build(job)
    for i, options in enumerate(job["configs"]):
        single = compute_plan(model, batches, AllocationConfig(task=job.get("task", "seq-cls"), **options))
        ranks = [Plan.load(tmp_path / f"r{r}-{i}.json") for r in (0, 1)]
        assert ranks[0].fingerprint() == ranks[1].fingerprint()  # every rank returns rank 0's plan
        got = ranks[0]
        assert got.ranks == single.ranks and got.budget.used == single.budget.used, options
        assert max(_relative(a.score, b.score) for a, b in zip(single.modules, got.modules, strict=True)) < 1e-5
        assert got.settings == single.settings | {"world_size": 2} and single.settings["world_size"] == 1
        assert got.settings["batches"] == BATCHES
        if options.get("init") == "gradient":
            _same_init(single, got)
    for rank in (0, 1):
        stats = json.loads((tmp_path / f"r{rank}-stats.json").read_text())
        assert BATCHES // 2 in stats["scored_batches"]  # the gradient passes saw this rank's half
        assert stats["bytes_reduced"] > 0


def test_fsdp2_sharded_model_plans_like_the_whole_model(tmp_path: Path) -> None:
    """FSDP2 (`fully_shard` per layer and on the model, CPU mesh over gloo): the hooks still see
    each rank's whole X and δ, so streamed scoring (which `auto` picks for a sharded model) and
    its gradient init match one process on the unsharded model."""
    job = {"arch": "llama", "task": "causal-lm", "batches": BATCHES, "fsdp": True, "configs": JOBS["llama"]["configs"]}
    job["configs"] = [job["configs"][0], {"proxy": "grad_norm", "scoring": "auto", **BUDGET}]
    outcomes = launch(2, job, tmp_path)
    assert [o.returncode for o in outcomes] == [0, 0], outcomes[0].log[-3000:]
    model, batches = build(job)
    for i, options in enumerate(job["configs"]):
        single = compute_plan(model, batches, AllocationConfig(task="causal-lm", **options))
        got = Plan.load(tmp_path / f"r0-{i}.json")
        assert got.ranks == single.ranks and got.settings["scoring_mode"] == "stream"
        assert max(_relative(a.score, b.score) for a, b in zip(single.modules, got.modules, strict=True)) < 1e-5
        if options.get("init") == "gradient":
            _same_init(single, got)


def test_a_rank_that_dies_mid_way_fails_the_plan_clearly(tmp_path: Path) -> None:
    job = {**JOBS["bert"], "configs": JOBS["bert"]["configs"][:1], "die": {"rank": 1, "at": "scoring 2/"}}
    survivor, dead = launch(2, job, tmp_path)
    assert dead.returncode == DIED
    assert survivor.returncode not in (0, None), survivor.log[-2000:]
    assert "DistributedError" in survivor.log and "another rank probably died" in survivor.log, survivor.log[-2000:]
    assert not list(tmp_path.glob("r*-0.json"))  # no plan from either rank


def test_ranks_that_disagree_are_refused_before_scoring(tmp_path: Path) -> None:
    job = {**JOBS["bert"], "configs": JOBS["bert"]["configs"][:1], "vary_seed": True}
    outcomes = launch(2, job, tmp_path)
    assert [o.returncode != 0 for o in outcomes] == [True, True]
    assert all("different configuration from rank 0" in o.log for o in outcomes), outcomes[0].log[-2000:]
    assert not list(tmp_path.glob("r*-0.json"))


def test_shards_are_contiguous_blocks_in_rank_order() -> None:
    group = Group(rank=1, world_size=3, local_rank=1, backend="gloo")
    assert group.shard(list(range(8))) == [2, 3, 4]  # blocks: [0, 1], [2, 3, 4], [5, 6, 7]
    assert [x for r in range(3) for x in Group(r, 3, r, "gloo").shard(list(range(8)))] == list(range(8))
    assert Group(3, 4, 3, "gloo").shard([0, 1]) == [1] and Group(0, 4, 0, "gloo").shard([0, 1]) == []
