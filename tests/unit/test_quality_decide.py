"""The round-3 decision rule read mechanically from merged reports (benchmarks/quality/decide.py)."""

from __future__ import annotations

from typing import Any

from benchmarks.quality.decide import decide, versus


def arm(
    name: str, n: int, delta: float, ci: list[float], p: float, early: float = -8.0, early_lo: float = -9.0
) -> dict[str, Any]:
    return {
        "name": name, "seeds": list(range(n)), "paired_delta": {"mean": delta}, "paired_ci95": ci,
        "wilcoxon_p_holm": p, "epoch1_vs_baseline_final": {"mean": early, "ci95": [early_lo, early + 1]},
    }  # fmt: skip


def test_way_one_beats_way_two_and_rte_can_veto() -> None:
    mrpc = {"arms": [
        arm("heterolora", 7, 2.5, [1.0, 4.0], 0.01),  # best numbers, but only 7 of 10 seeds
        arm("heterolora_init", 10, 1.7, [0.5, 2.9], 0.01),  # way 1
        arm("uniform_all_init", 10, 1.9, [-0.2, 4.0], 0.2, early=0.3, early_lo=-0.8),  # way 2 only
    ]}  # fmt: skip
    rte = {"arms": [arm(n, 5, 0.0, [-1.0, 1.0], 0.9) for n in ("heterolora", "heterolora_init", "uniform_all_init")]}
    verdict = decide(mrpc, rte)
    by_arm = {v["arm"]: v for v in verdict["candidates"]}
    assert not by_arm["heterolora"]["meets_goal"] and "MRPC: 7 of 10 seeds" in by_arm["heterolora"]["reasons"]
    assert by_arm["heterolora_init"]["way1"] and not by_arm["heterolora_init"]["way2"]
    assert by_arm["uniform_all_init"]["way2"] and not by_arm["uniform_all_init"]["way1"]
    assert verdict["chosen"] == "heterolora_init"  # way 1 before way 2, though way 2's Δ is larger

    rte["arms"][1]["paired_ci95"] = [-3.0, -0.1]  # worse on RTE: vetoed
    assert decide(mrpc, rte)["chosen"] == "uniform_all_init"
    assert decide(mrpc, None)["chosen"] is None  # no RTE runs, no default change


def test_nothing_meets_the_goal_below_the_threshold() -> None:
    mrpc = {"arms": [arm(n, 10, 1.5, [0.2, 2.8], 0.01) for n in ("heterolora", "heterolora_init", "uniform_all_init")]}
    rte = {"arms": [arm(n, 5, 0.0, [-1.0, 1.0], 0.9) for n in ("heterolora", "heterolora_init", "uniform_all_init")]}
    verdict = decide(mrpc, rte)
    assert verdict["chosen"] is None
    assert all("way 1: paired Δ 1.5" in v["reasons"][0] for v in verdict["candidates"])


def test_versus_pairs_two_arms_on_their_shared_seeds() -> None:
    report = {"arms": [
        {"name": "dynamic_wide", "seeds": [0, 1, 2, 3], "accuracy": [80.0, 79.0, 81.0, 50.0]},
        {"name": "dynamic", "seeds": [0, 1, 2], "accuracy": [71.0, 72.0, 71.0]},
    ]}  # fmt: skip
    out = versus(report, "dynamic_wide", "dynamic")  # seed 3 has no pair
    assert out["n"] == 3 and out["mean"] == 8.667 and out["wins"] == 3 and out["above_zero"]
    report["arms"][0]["accuracy"] = [72.0, 71.0, 71.5, 50.0]  # +1, -1, +0.5: the interval spans 0
    assert not versus(report, "dynamic_wide", "dynamic")["above_zero"]


def _arm4(name: str, n: int, mean: float, interval: list[float], p: float) -> dict[str, Any]:
    return {
        "name": name,
        "versus": {"uniform_all": {"n": n, "mean": mean, "ci95_rule": interval, "wilcoxon_p_holm": p}},
    }


def test_round4_rule_judges_the_larger_mrpc_mean_only() -> None:
    from benchmarks.quality.decide import decide4

    mrpc = {
        "arms": [_arm4("heterolora", 10, 0.6, [0.1, 1.1], 0.01), _arm4("heterolora_init", 10, 0.9, [-0.1, 1.9], 0.2)]
    }
    sst2 = {"arms": [_arm4("heterolora", 10, 0.0, [-0.4, 0.4], 0.9), _arm4("heterolora_init", 10, 0.0, [-0.4, 0.4], 1)]}
    out = decide4(mrpc, sst2)
    # heterolora_init has the larger mean and fails; heterolora would pass but is not judged
    assert out["judged"] == "heterolora_init" and out["chosen"] is None
    assert any("does not lie above 0" in r for r in out["reasons"])
    mrpc["arms"][1] = _arm4("heterolora_init", 10, 0.5, [-0.1, 1.9], 0.2)
    assert decide4(mrpc, sst2)["chosen"] == "heterolora"
    sst2["arms"][0] = _arm4("heterolora", 10, 0.0, [-0.6, 0.4], 0.9)  # SST-2 floor is -0.5
    assert decide4(mrpc, sst2)["chosen"] is None
    assert decide4(mrpc, None)["chosen"] is None  # no SST-2 yet: nothing is chosen
