"""perf `threads` section: a plan with the default threads (heterolora/threads.py) against the
same plan on one thread, each in a fresh process, while a busy single-thread neighbour holds one
core. Paired and interleaved; the ratio of wall-time medians (wall, since waiting for a core is
the cost here). Target <= 1.2. The unmanaged torch default (every CPU, spinning waits) runs once
for reference when `old` is asked for.

    python -m benchmarks.perf --sections threads --out benchmarks/results
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks import REPO

if TYPE_CHECKING:  # torch must not load before the child has set OpenMP's wait policy
    from benchmarks.perf.workloads import Spec

# torch's threads, OpenMP's wait policy and our override all come from the environment: start clean.
CLEARED = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "MKL_NUM_THREADS",
    "HETEROLORA_TORCH_THREADS",
    "HETEROLORA_CPU_SHARERS",
)
MODES = {
    "default": {},  # what the CLI does: fitted threads, passive waits
    "one": {"HETEROLORA_TORCH_THREADS": "1"},
    "old": {"HETEROLORA_TORCH_THREADS": "torch"},  # torch's own count, spinning waits (no passive_wait)
}
# Busy on one CPU until its parent goes (so an interrupted benchmark leaves nothing spinning).
NEIGHBOUR = """import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
parent = os.getppid()
while os.getppid() == parent:
    pass
"""


def child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: set threads as the CLI would, load the workload, time one plan."""
    from heterolora.threads import apply_threads, passive_wait

    if mode != "old":
        passive_wait()
    threads = apply_threads()
    from benchmarks.perf.workloads import Spec, load
    from heterolora.engine import compute_plan

    work = load(Spec(**spec))
    config = work.spec.config()
    batches = work.build(config)
    start = time.perf_counter()
    compute_plan(work.model, batches, config)
    return {"plan_s": time.perf_counter() - start, "threads": threads}


def _run(mode: str, spec: Spec, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED} | MODES[mode]
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "benchmarks.perf.threads", mode, json.dumps(spec.to_dict())]
    try:
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"plan_s": None, "timed_out_s": timeout}
    return json.loads(out.stdout.strip().splitlines()[-1])


def threads_ratio(spec: Spec, rounds: int, old: bool) -> dict[str, Any]:
    from benchmarks.perf.timing import median, rounded

    cpus = sorted(os.sched_getaffinity(0))
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(cpus[-1])])
    try:
        runs: dict[str, list[dict[str, Any]]] = {"default": [], "one": []}
        for r in range(rounds):
            order = ["default", "one"] if r % 2 == 0 else ["one", "default"]
            for mode in order:
                runs[mode].append(_run(mode, spec, timeout=600))
        base = median([x["plan_s"] for x in runs["one"]])
        old_run = _run("old", spec, timeout=20 * base + 30) if old else None
    finally:
        neighbour.kill()
        neighbour.wait()
    result = {
        "ratio": rounded(median([x["plan_s"] for x in runs["default"]]) / base),
        "plan_s": {m: [rounded(x["plan_s"]) for x in v] for m, v in runs.items()},
        "threads": {m: v[0]["threads"] for m, v in runs.items()},
        "cpus": len(cpus),
        "neighbour": f"one busy single-thread process pinned to CPU {cpus[-1]}",
        "rounds": rounds,
        "model": spec.model,
    }
    if old_run is not None:
        plan_s = old_run["plan_s"]
        result["old_default"] = {
            "threads": old_run.get("threads"),
            "ratio": rounded(plan_s / base) if plan_s else f"> {rounded(old_run['timed_out_s'] / base)}",
        }
    return result


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], json.loads(sys.argv[2]))))
