"""The quality report's paired statistics, against numbers worked out by hand (docs/quality.md)."""

from __future__ import annotations

import pytest

from benchmarks.quality.stats import bootstrap_ci95, ci95, holm, paired, t975, wider, wilcoxon_p


def test_t_quantiles_match_the_tables() -> None:
    assert t975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t975(9) == pytest.approx(2.2622, abs=1e-4)  # 10 seeds
    assert t975(40) == pytest.approx(2.0211, abs=2e-4)  # beyond the table: Cornish-Fisher
    assert t975(120) == pytest.approx(1.9799, abs=1e-4)
    with pytest.raises(ValueError):
        t975(0)


def test_ci95_of_paired_differences() -> None:
    # mean 2, sd 1 (diffs 1, 2, 3), n = 3: 2 +- 4.302653 / sqrt(3) = 2 +- 2.484138
    low, high = ci95([1.0, 2.0, 3.0])
    assert low == pytest.approx(-0.484138, abs=1e-6) and high == pytest.approx(4.484138, abs=1e-6)
    assert ci95([1.5]) is None


def test_wilcoxon_exact_small_cases() -> None:
    # all five positive: W+ = 15 is the largest of 32 sign patterns -> p = 2 / 32
    assert wilcoxon_p([1, 2, 3, 4, 5]) == pytest.approx(0.0625)
    # -2 flips rank 2: W+ = 13; patterns with W+ >= 13 leave out {}, {1} or {2} -> p = 2 * 3 / 32
    assert wilcoxon_p([1, -2, 3, 4, 5]) == pytest.approx(0.1875)
    # symmetric around zero: mid-ranks 1.5, 1.5, 3.5, 3.5, W+ = 5 of 10, the median -> p = 1
    assert wilcoxon_p([1, -1, 2, -2]) == pytest.approx(1.0)
    # zeros are dropped: the same as [1, 2, 3, 4, 5]
    assert wilcoxon_p([0.0, 1, 2, 3, 4, 5, 0.0]) == pytest.approx(0.0625)
    assert wilcoxon_p([0.0, 0.0]) is None
    # ties: |d| = 1, 1, 2 -> mid-ranks 1.5, 1.5, 3; all positive gives W+ = 6, the largest of 8 patterns,
    # and only one pattern reaches it -> p = 2 / 8
    assert wilcoxon_p([1, 1, 2]) == pytest.approx(0.25)
    # ten seeds all in favour: 2 / 1024
    assert wilcoxon_p([0.25 * (i + 1) for i in range(10)]) == pytest.approx(2 / 1024)


def test_holm_adjustment() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": None})
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_paired_uses_shared_seeds_only() -> None:
    arm = {0: 80.0, 1: 79.0, 2: 81.0, 3: 70.0}
    base = {0: 79.0, 1: 79.5, 2: 78.0, 9: 50.0}
    out = paired(arm, base)
    assert out["n"] == 3 and out["mean"] == pytest.approx(1.167, abs=1e-3)
    assert (out["wins"], out["losses"]) == (2, 1)
    # diffs 1, -0.5, 3: ranks 2, 1, 3 -> W+ = 5 of 6; patterns with W+ >= 5: {2,3}, {1,2,3} -> p = 2 * 2 / 8
    assert out["wilcoxon_p"] == pytest.approx(0.5)
    assert out["ci95"][0] < 0 < out["ci95"][1]


def test_bootstrap_interval_is_seeded_and_can_exclude_zero() -> None:
    gold = [1, 0] * 100
    right = list(gold)
    wrong_10 = [1 - g if i < 20 else g for i, g in enumerate(gold)]  # 20 of 200 wrong: 10 points worse
    # every seed identical: the seed draw changes nothing, only the examples vary
    better = bootstrap_ci95({0: right, 1: right}, {0: wrong_10, 1: wrong_10}, gold, resamples=4000, seed=0)
    assert better is not None and 0 < better[0] < 10 < better[1] < 20
    # binomial check: the difference is 1 on 20 of 200 examples, sd of the mean sqrt(0.1 * 0.9 / 200) = 2.12 pts
    assert better[1] - better[0] == pytest.approx(2 * 1.96 * 2.121, rel=0.15)
    assert bootstrap_ci95({0: right}, {0: wrong_10}, gold, resamples=4000, seed=0) == pytest.approx(better)
    # deterministic for a seed, and another seed gives another (close) interval
    again = bootstrap_ci95({0: right, 1: right}, {0: wrong_10, 1: wrong_10}, gold, resamples=4000, seed=0)
    assert again == better
    assert bootstrap_ci95({0: right, 1: right}, {0: wrong_10, 1: wrong_10}, gold, resamples=4000, seed=1) != better
    # no difference at all: a point interval at 0; shared seeds only
    assert bootstrap_ci95({0: right, 5: wrong_10}, {0: right, 7: right}, gold) == (0.0, 0.0)
    assert bootstrap_ci95({0: right}, {1: right}, gold) is None


def test_bootstrap_sees_the_seed_spread_too() -> None:
    """Seed 0 is 10 points ahead, seed 1 10 points behind: the seed draw alone spans -10..+10, so the
    two-way interval is wide and covers 0, although each seed on its own is clearly non-zero."""
    gold = [1, 0] * 100
    wrong = [1 - g if i < 20 else g for i, g in enumerate(gold)]
    low, high = bootstrap_ci95({0: gold, 1: wrong}, {0: wrong, 1: gold}, gold, resamples=4000, seed=0)
    assert low < -5 and high > 5


def test_wider_interval_is_the_rules_interval() -> None:
    assert wider([0.1, 1.0], (-0.2, 1.2)) == [-0.2, 1.2]
    assert wider([0.1, 1.0], None) == [0.1, 1.0]
    assert wider(None, None) is None
