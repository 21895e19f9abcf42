"""How stable is a plan? Zero-cost check of the proxies' signal against their sampling noise.

For each proxy and number of scoring batches K, plan MiniLM (mean-pooling head, as in the quality
benchmark) at the quality budget from 3 different scoring samples of MRPC train, and measure how
much of the budget two samples place identically. If plans from two samples of the same data
agree little, the proxy's ranking is mostly sampling noise at that K.

python -m benchmarks.plan_stability            # data: ../shared/data/glue, out: benchmarks/results
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks import GLUE, RESULTS
from benchmarks.quality.arms import BUDGET, random_ranks
from benchmarks.quality.data import load_rows
from benchmarks.quality.head import mean_head
from heterolora.allocation import choose
from heterolora.budget import check_plan_budget
from heterolora.config import AllocationConfig
from heterolora.loading import load_model
from heterolora.samples import make_batches
from heterolora.scoring import score_sites
from heterolora.search_space import discover
from heterolora.sites import discover_space

ATTENTION = {"q", "k", "v", "o"}


def agreement(a: dict[str, int], b: dict[str, int], cost: dict[str, int], limit: int) -> float:
    """Share of the budget that both plans spend on the same site at the same rank or more."""
    return sum(cost[n] * min(a[n], b[n]) for n in a) / limit


def attention_share(ranks: dict[str, int], cost: dict[str, int], site_type: dict[str, str]) -> float:
    spent = sum(cost[n] * r for n, r in ranks.items())
    return sum(cost[n] * r for n, r in ranks.items() if site_type[n] in ATTENTION) / spent


def summary(
    proxy: str, k: int, plans: list[dict[str, int]], seconds: float, cost: dict, kind: dict, limit: int
) -> dict:
    pairs = [agreement(a, b, cost, limit) for a, b in itertools.combinations(plans, 2)]
    return {
        "proxy": proxy,
        "batches": k,
        "agreement": round(statistics.fmean(pairs), 4),
        "attention_share": round(statistics.fmean(attention_share(p, cost, kind) for p in plans), 4),
        "rank_units": round(statistics.fmean(sum(p.values()) for p in plans), 1),
        "seconds_per_plan": round(seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plan_stability", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(GLUE))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--proxies", default="rank_energy,grad_norm,snip")
    ap.add_argument("--batches", default="4,8,16,32,64")
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = load_rows(args.data, "mrpc", "train")
    torch.manual_seed(0)
    loaded = load_model("minilm", "seq-cls", num_labels=2)
    model = mean_head(loaded.model)
    sites = discover(model)
    cost = {c.name: c.cost_per_rank for c in sites}
    kind = {c.name: c.type for c in sites}
    results = []
    space = discover_space(model, AllocationConfig(budget=BUDGET))  # the same for every proxy
    budget = check_plan_budget(model, AllocationConfig(budget=BUDGET), space)
    limit = budget.limit
    # No signal: the allocation rule fed uniform random scores (arm `random`), one seed per sample.
    plans = [random_ranks(model, AllocationConfig(), seed) for seed in range(args.samples)]
    results.append(summary("random scores", 0, plans, 0.0, cost, kind, limit))
    for proxy, k in itertools.product(args.proxies.split(","), [int(x) for x in args.batches.split(",")]):
        config = AllocationConfig(proxy=proxy, budget=BUDGET)
        plans, seconds = [], 0.0
        for sample in range(args.samples):
            batches = make_batches(
                rows, loaded.tokenizer, task="seq-cls", batch_size=8, num_batches=k, max_length=128,
                seed=100 + sample, labels={0: 0, 1: 1},
            )  # fmt: skip
            t0 = time.perf_counter()
            scored = score_sites(model, batches, config, lambda f, m: None, space)
            seconds += time.perf_counter() - t0
            plans.append(choose(scored, config, budget))
        row = summary(proxy, k, plans, seconds / args.samples, cost, kind, limit)
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        write(Path(args.out), results)  # after every row: a long run keeps what it measured
    write(Path(args.out), results)


def write(out: Path, results: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.plan_stability " + " ".join(sys.argv[1:])
    (out / "plan-stability.json").write_text(json.dumps({"command": command, "rows": results}, indent=1) + "\n")
    lines = [
        "# Plan stability: the same proxy on different scoring samples (MiniLM, MRPC train, quality budget)",
        "",
        "agreement = share of the 82,944-parameter budget two plans from different samples place on the same",
        "site at the same rank (mean over sample pairs); 1.0 = identical plans.",
        "",
        "| proxy | scoring batches (x8) | agreement | attention share | rank units | s per plan (1 thread) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['proxy']} | {r['batches']} | {r['agreement']:.3f} | {r['attention_share']:.3f} "
            f"| {r['rank_units']} | {r['seconds_per_plan']} |"
            for r in results
        ),
        "",
        f"Command: `{command}`",
        "",
    ]
    (out / "plan-stability.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
