"""Planning time with init="gradient" against init="zero" and against K forward+backward passes,
side by side on MiniLM (issue 14: planning with init must stay <= 1.2 x K passes).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/init_perf.py --rounds 3 --out benchmarks/results/init-perf.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.perf.timing import CLOCK, interleave, median
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.planner import prepare
from heterolora.proxies.context import ProxyContext
from heterolora.samples import builtin_sample
from heterolora.search_space import discover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-batches", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/init-perf.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = AllocationConfig(num_batches=args.num_batches)
    loaded, batches = prepare("minilm", builtin_sample(), base, device="cpu")
    model = loaded.model
    sites = discover(model)

    def passes() -> None:  # K forward+backward passes that accumulate every site's dL/dW
        ProxyContext(model, batches, sites, [1]).weight_grads()

    variants = {
        "k_passes": passes,
        "plan_zero": lambda: compute_plan(model, batches, base),
        "plan_gradient_lora_ga": lambda: compute_plan(
            model, batches, base.model_copy(update={"init": "gradient", "init_variant": "lora_ga"})
        ),
        "plan_gradient_gora": lambda: compute_plan(
            model, batches, base.model_copy(update={"init": "gradient", "init_variant": "gora"})
        ),
    }
    times = interleave(variants, args.rounds)
    med = {k: round(median(v), 3) for k, v in times.items()}
    result = {
        "command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/init_perf.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": "minilm",
        "proxy": base.proxy,
        "num_batches": len(batches),
        "batch_size": base.batch_size,
        "clock": CLOCK,
        "rounds": args.rounds,
        "median_s": med,
        "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_gradient_over_k_passes": round(med["plan_gradient_lora_ga"] / med["k_passes"], 3),
        "ratio_gora_over_k_passes": round(med["plan_gradient_gora"] / med["k_passes"], 3),
        "ratio_zero_over_k_passes": round(med["plan_zero"] / med["k_passes"], 3),
        "ratio_gradient_over_zero": round(med["plan_gradient_lora_ga"] / med["plan_zero"], 3),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
