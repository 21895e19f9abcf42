"""The plan-stability benchmark's measures (benchmarks/plan_stability.py), on hand-made plans."""

from __future__ import annotations

import pytest

from benchmarks.plan_stability import agreement, attention_share, summary

COST = {"l0.q": 768, "l0.up": 1920}
KIND = {"l0.q": "q", "l0.up": "up"}


def test_agreement_counts_the_budget_both_plans_place_alike() -> None:
    a, b = {"l0.q": 4, "l0.up": 1}, {"l0.q": 2, "l0.up": 1}
    assert agreement(a, a, COST, 768 * 4 + 1920) == pytest.approx(1.0)
    assert agreement(a, b, COST, 768 * 4 + 1920) == pytest.approx((768 * 2 + 1920) / (768 * 4 + 1920))
    assert agreement({"l0.q": 4, "l0.up": 0}, {"l0.q": 0, "l0.up": 2}, COST, 3840) == 0.0


def test_attention_share_and_summary() -> None:
    plan = {"l0.q": 5, "l0.up": 1}
    assert attention_share(plan, COST, KIND) == pytest.approx(3840 / (3840 + 1920))
    row = summary("x", 4, [plan, plan, {"l0.q": 0, "l0.up": 3}], 1.5, COST, KIND, 5760)
    assert row["batches"] == 4 and row["rank_units"] == 5.0
    assert row["agreement"] == pytest.approx((1.0 + 1920 / 5760 + 1920 / 5760) / 3, abs=1e-4)
