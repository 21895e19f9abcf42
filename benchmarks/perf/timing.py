"""Timing helpers for the performance benchmark: interleaved rounds, medians, log-log fits.

Every figure in perf.json is a ratio of two things measured in the same process, in alternation
(A, B, A, B, ...), so that load from other processes on a shared machine hits both sides alike.

The engine sections run on the CPU with torch on one thread and read the process's CPU time: on
a shared machine wall time also counts the time spent waiting for a core, CPU time counts the work.
(A GPU run would need wall time after torch.cuda.synchronize(); no GPU was lent to this project.)
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

CLOCK = "process CPU time (torch on 1 thread)"


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of one call, after a garbage collection (no variant pays another's)."""
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def interleave(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Run every variant once per round, in the same order each round; all times per variant."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(timed(fn))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): the exponent p in y ~ x^p."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    den = sum((a - mx) ** 2 for a in lx)
    return num / den


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): p99 of 200 values is the 198th smallest."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits)
