"""perf `distributed` section: the same plan by one process and by two ranks on this machine's
CPUs (gloo; devtools/ranks.py starts the ranks as torchrun would), interleaved rounds, wall time
of compute_plan on rank 0 (the ranks wait for each other, so rank 0 ends last); and the float32
bytes each rank all-reduced, per site. Threads follow heterolora/threads.py: one process uses
every CPU, two ranks share them.

    python -m benchmarks.perf --sections distributed --out benchmarks/results
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.perf.timing import median, rounded
from benchmarks.perf.workloads import Spec
from devtools.ranks import launch


def _plan_once(world: int, job: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="perf-dist-") as name:
        outcomes = launch(world, job, Path(name), timeout=1200)
        failed = [o.log[-2000:] for o in outcomes if o.returncode != 0]
        if failed:
            raise RuntimeError(f"a rank failed:\n{failed[0]}")
        stats = json.loads((Path(name) / "r0-stats.json").read_text())
        plan = json.loads((Path(name) / "r0-0.json").read_text())
    return stats | {"sites": len(plan["modules"]), "mode": plan["settings"]["scoring_mode"]}


def distributed_ratio(spec: Spec, rounds: int, scoring: str = "stream") -> dict[str, Any]:
    job = {"workload": spec.to_dict(), "configs": [{"proxy": "rank_energy", "scoring": scoring}]}
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(rounds):
        for world in (1, 2) if r % 2 == 0 else (2, 1):
            runs[world].append(_plan_once(world, job))
    one = median([x["plan_s"][0] for x in runs[1]])
    two = median([x["plan_s"][0] for x in runs[2]])
    sample = runs[2][0]
    return {
        "ratio": rounded(two / one),
        "plan_s": {f"{w}_proc": [rounded(x["plan_s"][0]) for x in v] for w, v in runs.items()},
        "bytes_per_site": round(sample["bytes_reduced"] / sample["sites"]),
        "all_reduces": sample["reductions"],
        "sites": sample["sites"],
        "scoring": sample["mode"],
        "model": f"LLaMA {spec.layers} layers, hidden {spec.hidden}, K = {spec.num_batches} batches of "
        f"{spec.batch_size} x {spec.seq_len} tokens, rank_energy",
        "rounds": rounds,
    }
