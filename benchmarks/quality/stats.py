"""Paired statistics of the quality protocols (docs/quality.md), without scipy: the paired mean
difference with its 95 % t-interval, the exact Wilcoxon signed-rank test, wins, Holm's correction,
and the two-way bootstrap over seeds and evaluation examples.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

# Two-sided 95 % quantiles of Student's t, t(0.975, df), df = 1..30 (standard tables).
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z975 = 1.959964
MAX_EXACT_N = 60  # the exact null distribution is a table of about n^2 (n+1) / 2 counts; ample for 10 seeds


def t975(df: int) -> float:
    """t(0.975, df); beyond the table, the Cornish-Fisher expansion (error < 1e-4 for df > 30)."""
    if df < 1:
        raise ValueError("a t-interval needs at least two pairs")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def ci95(diffs: list[float]) -> tuple[float, float] | None:
    """95 % t-interval of the mean of paired differences; None with fewer than two pairs."""
    if len(diffs) < 2:
        return None
    mean = statistics.fmean(diffs)
    half = t975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean - half, mean + half


def _ranks(values: list[float]) -> list[float]:
    """Ranks 1..n of `values`, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def wilcoxon_p(diffs: list[float], tol: float = 1e-9) -> float | None:
    """Two-sided exact p-value of the Wilcoxon signed-rank test. Zero differences are dropped
    (Wilcoxon's rule); ties share mid-ranks and the null distribution is enumerated for those very
    ranks (every sign pattern equally likely), so the p-value is exact with ties too. None when no
    difference is non-zero; p = 2 min(P(W+ <= w), P(W+ >= w)), capped at 1."""
    nonzero = [d for d in diffs if abs(d) > tol]
    n = len(nonzero)
    if n == 0:
        return None
    if n > MAX_EXACT_N:
        raise ValueError(f"exact Wilcoxon for at most {MAX_EXACT_N} pairs")
    # mid-ranks are halves: double them to count integer sums
    doubled = [round(2 * r) for r in _ranks([round(abs(d), 6) for d in nonzero])]
    w_plus = sum(r for r, d in zip(doubled, nonzero, strict=True) if d > 0)
    counts = [1] + [0] * sum(doubled)  # counts[s] = sign patterns with W+ (doubled) = s
    for r in doubled:
        for s in range(len(counts) - 1, r - 1, -1):
            counts[s] += counts[s - r]
    total = 2**n
    lower = sum(counts[: w_plus + 1]) / total
    upper = sum(counts[w_plus:]) / total
    return min(1.0, 2 * min(lower, upper))


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment over the arms that have a p-value (None stays None)."""
    known = sorted((p, name) for name, p in pvalues.items() if p is not None)
    m = len(known)
    adjusted: dict[str, float | None] = dict.fromkeys(pvalues)
    running = 0.0
    for i, (p, name) in enumerate(known):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[name] = running
    return adjusted


def paired(arm_by_seed: dict[int, float], base_by_seed: dict[int, float]) -> dict[str, Any]:
    """Arm minus baseline over the seeds both have: mean, sd, 95 % t-interval, Wilcoxon p, wins."""
    seeds = sorted(set(arm_by_seed) & set(base_by_seed))
    diffs = [arm_by_seed[s] - base_by_seed[s] for s in seeds]
    interval = ci95(diffs)
    return {
        "n": len(diffs),
        "mean": round(statistics.fmean(diffs), 3) if diffs else None,
        "sd": round(statistics.stdev(diffs), 3) if len(diffs) > 1 else (0.0 if diffs else None),
        "ci95": [round(interval[0], 3), round(interval[1], 3)] if interval else None,
        "wilcoxon_p": round(p, 5) if (p := wilcoxon_p(diffs)) is not None else None,
        "wins": sum(d > 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
    }


def bootstrap_ci95(
    arm: dict[int, list[int]], other: dict[int, list[int]], gold: list[int], resamples: int = 10_000, seed: int = 0
) -> tuple[float, float] | None:
    """Two-way bootstrap of the paired accuracy difference (points): each resample draws the shared
    seeds with replacement and, independently, the evaluation examples with replacement (the same
    examples for both arms and every drawn seed); the statistic is the mean over drawn seeds of the
    two arms' accuracy difference on the drawn examples. 95 % percentile interval; deterministic for
    `seed`. `arm` and `other` map a seed to its per-example predictions. None without a shared seed."""
    import numpy as np

    seeds = sorted(set(arm) & set(other))
    if not seeds:
        return None
    truth = np.asarray(gold)
    correct = [(np.asarray(arm[s]) == truth).astype(float) - (np.asarray(other[s]) == truth) for s in seeds]
    diff = np.stack(correct)  # seeds x examples, each -1, 0 or 1
    n_seeds, n_examples = diff.shape
    rng = np.random.default_rng(seed)
    # a resample's statistic is w' D v / (S N), with w and v the draw counts of seeds and examples
    w = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)
    v = rng.multinomial(n_examples, np.full(n_examples, 1 / n_examples), size=resamples)
    stats = ((w @ diff) * v).sum(axis=1) * (100 / (n_seeds * n_examples))
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def wider(*intervals: tuple[float, float] | list[float] | None) -> list[float] | None:
    """The widest of the given intervals (the default rule reads it); None if none is known."""
    known = [list(i) for i in intervals if i is not None]
    return max(known, key=lambda i: i[1] - i[0]) if known else None
