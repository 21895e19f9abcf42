"""The performance benchmark: `make bench-perf` -> benchmarks/results/perf.json and perf.md.

    python -m benchmarks.perf --data ../shared/data/glue/mrpc/train.tsv --out benchmarks/results  # full
    python -m benchmarks.perf --quick --out /tmp/perf            # tiny models, seconds (the tests)
    python -m benchmarks.perf --sections overhead,eva --out DIR  # only some sections

Every headline figure is a ratio of two quantities measured in the same run, interleaved, with
medians; docs/performance.md explains each method and the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks import RESULTS
from benchmarks.perf import engine
from benchmarks.perf.report import judge, markdown
from benchmarks.perf.timing import CLOCK, machine, rounded
from benchmarks.perf.workloads import Spec, load

SECTIONS = ("overhead", "eva", "scaling", "memory", "service", "threads", "distributed")


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    mode: str
    work: Spec  # overhead and EVA
    memory: Spec
    scaling: Spec
    ks: list[int]
    depths: list[int]
    rounds: int
    eva_rounds: int
    memory_rounds: int
    scaling_rounds: int
    service: dict[str, int] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)  # benchmarks/perf/threads.py
    distributed: dict[str, Any] = field(default_factory=dict)  # benchmarks/perf/distributed.py


FULL = Plan(
    mode="full",
    work=Spec(model="minilm", num_batches=16, batch_size=8, max_length=128),
    memory=Spec(model="minilm", num_batches=8, batch_size=8, max_length=128),
    scaling=Spec(model="llama", num_batches=16, batch_size=8, seq_len=64, layers=4, hidden=256),
    ks=[8, 16, 32, 64],
    depths=[2, 4, 8, 16],
    rounds=3,
    eva_rounds=2,
    memory_rounds=2,
    scaling_rounds=2,
    service={"rounds": 3, "requests": 200, "jobs": 10, "num_batches": 16},
    threads={"spec": Spec(model="minilm", num_batches=4, batch_size=8, max_length=128), "rounds": 3, "old": True},
    distributed={
        "spec": Spec(model="llama", num_batches=16, batch_size=8, seq_len=64, layers=4, hidden=256),
        "rounds": 2,
    },
)
TINY = Spec(model="llama", num_batches=4, batch_size=4, seq_len=16, layers=2, hidden=32)
QUICK = Plan(
    mode="quick",
    work=TINY,
    memory=TINY,
    scaling=TINY,
    ks=[2, 4],
    depths=[1, 2],
    rounds=1,
    eva_rounds=1,
    memory_rounds=1,
    scaling_rounds=1,
    service={"rounds": 1, "requests": 20, "jobs": 2, "num_batches": 2},
    threads={"spec": TINY, "rounds": 1, "old": False},
    distributed={"spec": TINY, "rounds": 1},
)


def run(plan: Plan, sections: tuple[str, ...]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    if "overhead" in sections or "eva" in sections:
        work = load(plan.work)
        if "overhead" in sections:
            details["overhead"] = engine.proxy_overhead(work, plan.rounds)
            results["proxy_overhead_ratio"] = dict(details["overhead"]["ratios"])
            details["alpha_test"] = engine.alpha_test_overhead(work, details["overhead"]["limit_s"])
            results["proxy_overhead_ratio"]["alpha_test"] = details["alpha_test"]["ratio"]
        if "eva" in sections:
            details["eva"] = engine.eva_ratio(work, plan.eva_rounds)
            results["eva_time_ratio"] = details["eva"]["ratio"]
    if "scaling" in sections:
        details["scaling_k"] = engine.scaling_k(plan.scaling, plan.ks, plan.scaling_rounds)
        details["scaling_depth"] = engine.scaling_depth(plan.scaling, plan.depths, plan.scaling_rounds)
        results["scaling_exponent_k"] = details["scaling_k"]["exponent"]
        results["scaling_exponent_depth"] = details["scaling_depth"]["exponent"]
    if "memory" in sections:
        from benchmarks.perf.memory import memory_ratio

        proxies = ("grad_norm",) if plan.mode == "quick" else ("grad_norm", "rank_energy")
        details["memory"] = memory_ratio(plan.memory.to_dict(), proxies, plan.memory_rounds)
        results["memory_ratio"] = details["memory"]["ratio"]
    if "service" in sections:
        from benchmarks.perf.service import service_sections

        svc = service_sections(plan.mode == "quick", plan.work.data, **plan.service)
        details |= {"cache": svc["cache"], "cached_post": svc["cached_post"], "new_job": svc["new_job"]}
        results["cache_ratio"] = svc["cache"]["ratio"]
        results["rebudget_cache_ratio"] = svc["cache"]["rebudget_ratio"]
        results["cached_post_p50_ms"] = svc["cached_post"]["p50_ms"]
        results["cached_post_p99_ms"] = svc["cached_post"]["p99_ms"]
        results["new_job_overhead_ms"] = svc["new_job"]["overhead_ms"]
    if "threads" in sections:
        from benchmarks.perf.threads import threads_ratio

        details["threads"] = threads_ratio(**plan.threads)
        results["threads_ratio"] = details["threads"]["ratio"]
    if "distributed" in sections:
        from benchmarks.perf.distributed import distributed_ratio

        details["distributed"] = distributed_ratio(**plan.distributed)
        results["distributed_time_ratio"] = details["distributed"]["ratio"]
        results["distributed_bytes_per_site"] = details["distributed"]["bytes_per_site"]
    return results | {"details": details}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, one round: checks the harness")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for perf.json/.md")
    parser.add_argument("--data", default="", help="TSV/JSONL of text pairs for MiniLM (default: built-in)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    args = parser.parse_args(argv)
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    torch.set_num_threads(1)  # one thread: steadier on a shared machine; the service runs with one too
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    plan = QUICK if args.quick else FULL
    plan = replace(plan, work=replace(plan.work, data=args.data), memory=replace(plan.memory, data=args.data))
    results = run(plan, sections)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    results = {
        "command": f"python -m benchmarks.perf {argv_text}".strip(),
        "make_target": "make bench-perf",
        "mode": plan.mode,
        "machine": machine(),
        "engine_clock": CLOCK,
        "settings": {"work": plan.work.to_dict(), "memory": plan.memory.to_dict(), "scaling": plan.scaling.to_dict()},
        "wall_s": rounded(time.perf_counter() - start, 1),
        **results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results = _merge_partial(args.out / "perf.json", results, sections)
    results["targets"] = judge(results)
    (args.out / "perf.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "perf.md").write_text(markdown(results))
    return results


def _merge_partial(path: Path, results: dict[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """A run of some sections updates their keys in an existing perf.json and keeps the rest;
    `runs` records which command produced which sections."""
    run = {"command": results["command"], "sections": list(sections), "wall_s": results["wall_s"]}
    if not path.exists():
        return results | {"runs": [run]}
    previous = json.loads(path.read_text())
    if set(sections) == set(SECTIONS):  # the scale section is written by benchmarks.perf.scale: keep it
        return results | {"runs": [run]} | ({"scale": previous["scale"]} if "scale" in previous else {})
    if previous.get("mode") != results["mode"]:
        return results | {"runs": [run]}
    runs = previous.get("runs") or [{"command": previous["command"], "sections": list(SECTIONS)}]
    details = previous.get("details", {}) | results["details"]
    return previous | results | {"details": details, "runs": [*runs, run]}


if __name__ == "__main__":
    main()
