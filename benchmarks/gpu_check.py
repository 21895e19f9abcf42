"""GPU check (≤ 8 min on one CUDA GPU): plan a synthetic LLaMA (default ~1.3B parameters) in bf16
with streamed scoring (with and without the gradient init) and exact scoring, and compare with one
PEFT LoRA step at the planned ranks and with K plain forward+backward passes, all in this process
on the same batches.

memory ratio = torch.cuda.max_memory_allocated during planning ÷ during the LoRA step (each measured
from the same baseline: model and batches on the GPU); time ratio = scoring ÷ K plain passes.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu-check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script (python benchmarks/gpu_check.py): the repo root, not tests/

from benchmarks.perf.memory_model import llama_config  # noqa: E402

SHAPES = {  # ~1.3B and ~2.7B LLaMA-shaped models (vocab 32000)
    "1b": {"vocab": 32000, "hidden": 2048, "intermediate": 5632, "layers": 22, "heads": 16},
    "3b": {"vocab": 32000, "hidden": 2560, "intermediate": 6912, "layers": 32, "heads": 20},
}


def build(shape: dict[str, int], dtype: torch.dtype) -> torch.nn.Module:
    import transformers as T

    cfg = llama_config(shape, 2048)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = T.LlamaForCausalLM(cfg).to(dtype)
    return model.eval()


def batches(k: int, size: int, seq: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(k):
        ids = torch.randint(3, 32000, (size, seq), generator=g).cuda()
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


def peak(fn) -> tuple[float, float]:
    """(peak GB above the current allocation, seconds) of fn()."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    ap.add_argument("--num-batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs CUDA")
    from peft import LoraConfig, get_peft_model

    from heterolora.config import AllocationConfig
    from heterolora.engine import compute_plan
    from heterolora.proxies.context import batch_loss

    model = build(SHAPES[args.shape], torch.bfloat16)
    data = batches(args.num_batches, args.batch_size, args.seq)
    weights_gb = torch.cuda.memory_allocated() / 2**30
    config = AllocationConfig(task="causal-lm", num_batches=args.num_batches, batch_size=args.batch_size)
    results, plans = {}, {}
    variants = {  # +init: the plan also builds its gradient init from the sketches (issue 14)
        "stream": {"scoring": "stream"},
        "stream+init": {"scoring": "stream", "init": "gradient"},
        "exact": {"scoring": "exact"},
    }
    for mode, update in variants.items():
        mode_config = config.model_copy(update=update)
        gb, s = peak(lambda c=mode_config, m=mode: plans.__setitem__(m, compute_plan(model, data, c)))
        timings = plans[mode].timings
        scoring_s = timings["scoring_s"] + timings.get("init_s", 0.0)
        results[mode] = {"peak_gb": round(gb, 3), "s": round(s, 2), "scoring_s": round(scoring_s, 3)}
    plan = plans["stream"]

    def plain() -> None:
        for b in data:
            batch_loss(model, b).backward()
            model.zero_grad(set_to_none=True)

    plain_gb, plain_s = peak(plain)
    peft_model = get_peft_model(model, LoraConfig(**plan.peft.model_dump(exclude_none=True)))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)

    def lora_step() -> None:
        peft_model.train()
        peft_model(**data[0]).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train_gb, _ = peak(lora_step)
    report = {
        "device": torch.cuda.get_device_name(),
        "params": sum(p.numel() for p in model.parameters()),
        "weights_gb": round(weights_gb, 3),
        "tokens_per_batch": args.batch_size * args.seq,
        "num_batches": args.num_batches,
        "train_peak_gb": round(train_gb, 3),
        "plain_peak_gb": round(plain_gb, 3),
        "plain_s": round(plain_s, 2),
        # ratios on the whole footprint (weights + what each variant adds), as a GPU must hold both
        "memory_ratio": {
            m: round((weights_gb + r["peak_gb"]) / (weights_gb + train_gb), 3) for m, r in results.items()
        },
        "time_ratio": {m: round(r["scoring_s"] / plain_s, 3) for m, r in results.items()},
        "runs": results,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
