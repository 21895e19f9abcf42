"""Scale section: planning an LLM in the memory of a LoRA training step.

For each model (the embedded MiniLM on MRPC; a synthetic LLaMA-shaped causal LM with random weights,
saved to a temporary folder with MiniLM's tokenizer), fresh child processes measure, one at a time:
- `train`: one PEFT LoRA step at the planned ranks (AdamW, train mode), same batches and dtype;
- `plan`: compute_plan with a proxy and a scoring mode (exact, stream), and with init="gradient"
  (`+init`: the plan also builds its LoRA A/B init file);
- `plain`: K forward+backward passes with every parameter trainable (the time reference).
Memory = peak RSS above the imports (VmHWM after resetting the high-water mark once the model and
batches are loaded; see benchmarks/perf_memory.py). Time = process CPU time, torch on one thread.

    python -m benchmarks.perf.scale --out benchmarks/results            # MiniLM + synthetic LLaMA
    python -m benchmarks.perf.scale --models minilm --out /tmp/x        # quick
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.perf.memory import lora_steps
from benchmarks.perf.memory_model import LLAMA_SMALL, LLAMA_SYNTHETIC, check_model, llama_config, predict
from benchmarks.perf.scale_report import model_check, read_section, save_section, write_report

REPO = Path(__file__).resolve().parents[2]
DATA = "../shared/data/glue/mrpc/train.tsv"
RANK_SET = [1, 2, 4, 8, 16, 32, 64]


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def save_synthetic_llama(folder: Path, shape: dict[str, int], seed: int = 0) -> Path:
    """A random-weight LlamaForCausalLM of `shape` plus MiniLM's tokenizer (vocab 30522 fits)."""
    import torch
    import transformers as T

    from heterolora.loading import embedded_model_path

    cfg = llama_config(shape, 512, bos_token_id=101, eos_token_id=102, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = T.LlamaForCausalLM(cfg)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():  # cheaper than _init_weights on a 0.3B model; same statistics
            p.normal_(0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (embedded_model_path() / name).exists():
            shutil.copy(embedded_model_path() / name, folder / name)
    return folder


def child(args: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process; prints nothing, returns the figures."""
    import torch

    torch.set_num_threads(1)
    import peft  # noqa: F401  (every variant pays the same imports)

    from heterolora.config import AllocationConfig
    from heterolora.engine import compute_plan
    from heterolora.planner import prepare
    from heterolora.proxies.context import batch_loss
    from heterolora.samples import read_samples

    imports_kb = _status_kb("VmRSS")
    spec = args["spec"]
    config = AllocationConfig(**spec["config"], **args.get("config", {}))
    from heterolora.samples import builtin_sample

    rows = read_samples(spec["data"])[:512] if Path(spec["data"]).is_file() else builtin_sample()
    if config.task == "causal-lm":  # a causal LM reads one text: the pair joined, no label
        rows = [{"text": " ".join(filter(None, (r["text"], r.get("text_pair"))))} for r in rows]
    loaded, batches = prepare(spec["model"], rows, config, device="cpu", dtype=spec["dtype"])
    model = loaded.model
    loaded_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    out: dict[str, Any] = {}
    start = time.process_time()
    if args["variant"] == "plan":
        plan = compute_plan(model, batches, config)
        out["ranks"] = {m.name: m.rank for m in plan.modules}
        out["scores"] = {m.name: m.score for m in plan.modules}
        out["peft"] = plan.peft.model_dump(exclude_none=True)
        out["mode"], out["passes"] = plan.settings["scoring_mode"], plan.settings["scoring_passes"]
    elif args["variant"] == "train":
        from peft import LoraConfig

        lora_steps(model, batches[:1], LoraConfig(**args["peft"]))  # one step at the planned ranks
    else:  # plain: K forward+backward, every parameter trainable
        model.eval()
        for batch in batches:
            batch_loss(model, batch).backward()
            model.zero_grad(set_to_none=True)
    out["cpu_s"] = round(time.process_time() - start, 3)
    out |= {"imports_kb": imports_kb, "loaded_kb": loaded_kb, "peak_kb": _status_kb("VmHWM")}
    out["tokens_per_batch"] = int(batches[0]["input_ids"].numel())
    return out


def measure(variant: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    payload = json.dumps({"variant": variant, "spec": spec, **extra})
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.perf.scale", "--child", payload],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{variant} child failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {variant} {extra.get('config', {})} -> {_mb(result):.0f} MB, {result['cpu_s']} s", file=sys.stderr)
    return result


def _mb(r: dict[str, Any]) -> float:
    return (r["peak_kb"] - r["imports_kb"]) / 1024


def run_model(name: str, spec: dict[str, Any], proxies: list[str]) -> dict[str, Any]:
    """Stream plan (reference ranks for the LoRA step), LoRA step, plain passes, then every proxy
    streamed and rank_energy exact; memory ratios against the LoRA step."""
    print(f"{name}:", file=sys.stderr)
    runs: dict[str, dict[str, Any]] = {}
    runs["rank_energy/stream"] = measure("plan", spec, config={"proxy": "rank_energy", "scoring": "stream"})
    runs["train"] = measure("train", spec, peft=runs["rank_energy/stream"]["peft"])
    runs["plain"] = measure("plain", spec)
    runs["rank_energy/exact"] = measure("plan", spec, config={"proxy": "rank_energy", "scoring": "exact"})
    runs["rank_energy/stream-k4"] = measure(
        "plan", spec, config={"proxy": "rank_energy", "scoring": "stream", "sketch_oversampling": 4}
    )
    for mode in ("stream", "exact"):  # init="gradient" (issue 14): the init's factors on top of the scores
        init = {"proxy": "rank_energy", "scoring": mode, "init": "gradient"}
        runs[f"rank_energy/{mode}+init"] = measure("plan", spec, config=init)
    for proxy in proxies:
        if proxy != "rank_energy":
            runs[f"{proxy}/stream"] = measure("plan", spec, config={"proxy": proxy, "scoring": "stream"})
    train_mb, plain_s = _mb(runs["train"]), runs["plain"]["cpu_s"]
    variants = {k: v for k, v in runs.items() if "/" in k}
    return {
        "spec": spec,
        "train_mb": round(train_mb, 1),
        "loaded_mb": round((runs["train"]["loaded_kb"] - runs["train"]["imports_kb"]) / 1024, 1),
        "plain_s": plain_s,
        "memory_ratio": {k: round(_mb(v) / train_mb, 3) for k, v in variants.items()},
        "time_ratio": {k: round(v["cpu_s"] / plain_s, 3) for k, v in variants.items()},
        "mb": {k: round(_mb(v), 1) for k, v in runs.items()},
        "passes": {k: v["passes"] for k, v in variants.items()},
        "agreement": agreement(runs["rank_energy/exact"], runs["rank_energy/stream"], spec),
        "agreement_k4": agreement(runs["rank_energy/exact"], runs["rank_energy/stream-k4"], spec),
        "tokens_per_batch": runs["train"]["tokens_per_batch"],
    }


def agreement(exact: dict[str, Any], streamed: dict[str, Any], spec: dict[str, Any]) -> dict[str, float]:
    """Top-rank energy (the plan's score) relative error per site, worst; and the share of the
    budget both plans place alike (benchmarks/plan_stability.py's measure)."""
    worst = max(abs(streamed["scores"][n] - s) / s for n, s in exact["scores"].items())
    cost = spec["cost_per_rank"]
    used = sum(cost[n] * r for n, r in exact["ranks"].items())
    overlap = sum(cost[n] * min(r, streamed["ranks"][n]) for n, r in exact["ranks"].items()) / used
    return {"top_energy_max_rel_err": round(worst, 5), "plan_overlap": round(overlap, 4)}


def model_spec(model: str, task: str, dtype: str, data: str, num_batches: int, batch_size: int, max_length: int):
    from heterolora.loading import load_model
    from heterolora.search_space import discover

    loaded = load_model(model, task, dtype=dtype)
    cost = {c.name: c.cost_per_rank for c in discover(loaded.model)}
    shape = check_model(loaded.model)
    del loaded
    config = {"task": task, "num_batches": num_batches, "batch_size": batch_size, "max_length": max_length}
    config |= {"rank_set": RANK_SET, "budget": {"like": {"r": 8, "types": ["q", "v"]}}}
    return {"model": model, "dtype": dtype, "data": data, "config": config, "cost_per_rank": cost, "shape": shape}


def predicted(shape: dict[str, Any], result: dict[str, Any]) -> dict[str, float]:
    tokens, batch_size = result["tokens_per_batch"], result["spec"]["config"]["batch_size"]
    return predict(shape, tokens, RANK_SET[-1], seq_len=tokens // batch_size)


def remodel(out: Path) -> None:
    """Recompute the memory model's predictions for the measured models in perf.json, without
    measuring again (the model's formula changed; the measurements did not)."""
    import torch
    import transformers as T

    from heterolora.loading import load_model

    section = read_section(out)
    for name, result in section["models"].items():
        if name == "minilm":
            model = load_model("minilm", "seq-cls").model
        else:  # the shape only: no weights needed
            cfg = llama_config(
                LLAMA_SMALL if name == "llama-small" else LLAMA_SYNTHETIC, 512, tie_word_embeddings=False
            )
            with torch.device("meta"):
                model = T.LlamaForCausalLM(cfg)
        shape = check_model(model) | {"bytes_per_weight": result["spec"]["shape"]["bytes_per_weight"]}
        result["predicted_mb"] = predicted(shape, result)
        result["memory_model_ratio"] = model_check(result)
    save_section(out, section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="minilm,llama", help="minilm, llama (0.34B), llama-small (0.1B)")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--proxies", default="rank_energy,grad_norm,snip,synflow,alpha_test")
    ap.add_argument("--num-batches", type=int, default=4, help="K for the synthetic LLaMA (CPU time)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--remodel", action="store_true", help="recompute the memory model's predictions only")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.remodel:
        remodel(Path(args.out))
        return
    proxies = args.proxies.split(",")
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="heterolora-scale-") as tmp:
        for name in args.models.split(","):
            if name == "minilm":
                spec = model_spec("minilm", "seq-cls", "float32", args.data, 8, 8, 128)
            else:
                # alpha_test is forward-only (no gradient, so its memory is below a training step by
                # construction) but searches every site: hours on this model on one CPU thread.
                proxies = [p for p in proxies if p != "alpha_test"]
                shape = LLAMA_SMALL if name == "llama-small" else LLAMA_SYNTHETIC
                folder = save_synthetic_llama(Path(tmp) / name, shape)
                spec = model_spec(str(folder), "causal-lm", "float32", args.data, args.num_batches,
                                  args.batch_size, args.max_length)  # fmt: skip
            results[name] = run_model(name, spec, proxies)
            results[name]["predicted_mb"] = predicted(spec["shape"], results[name])
    command = "python -m benchmarks.perf.scale " + " ".join(sys.argv[1:])
    write_report(Path(args.out), results, command, round(time.perf_counter() - t0, 1))


if __name__ == "__main__":
    main()
