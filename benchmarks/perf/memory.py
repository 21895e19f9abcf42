"""Memory section: peak resident memory of planning ÷ that of LoRA training steps, each in a fresh
process (tracemalloc does not see torch's allocator; a process's peak RSS does).

A child process imports everything both variants need, records its RSS, loads the model and the
batches, records its RSS again, resets the kernel's high-water mark (`echo 5 > /proc/self/clear_refs`)
and runs the variant; VmHWM is then the peak of that variant alone on top of the same baseline.

    python -m benchmarks.perf.memory '{"variant": "plan", "spec": {...}}'   # prints one JSON line
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.perf.timing import median, rounded

REPO = Path(__file__).resolve().parents[2]


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def lora_steps(model: Any, batches: list[dict], config: Any = None) -> None:
    """PEFT LoRA (`config`, default uniform r = 8 on q and v, PEFT's usual default), AdamW, one step
    per batch, train mode."""
    import torch
    from peft import LoraConfig, get_peft_model

    from heterolora.search_space import discover, head_modules

    if config is None:
        targets = [c.name for c in discover(model, ["q", "v"])]
        config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, modules_to_save=head_modules(model))
    peft_model = get_peft_model(model, config)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    peft_model.train()
    for batch in batches:
        peft_model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def child(variant: str, spec_values: dict[str, Any]) -> dict[str, int]:
    import torch

    torch.set_num_threads(1)
    import peft  # noqa: F401  (both variants pay the same imports)

    from benchmarks.perf.workloads import Spec, load
    from heterolora.engine import compute_plan

    imports_kb = _status_kb("VmRSS")
    spec = Spec(**spec_values)
    w = load(spec)
    batches = w.build(spec.config())
    loaded_kb = _status_kb("VmRSS")
    _reset_peak()
    if variant == "plan":
        compute_plan(w.model, batches, spec.config())
    else:
        lora_steps(w.model, batches)
    return {"imports_kb": imports_kb, "loaded_kb": loaded_kb, "peak_kb": _status_kb("VmHWM")}


def measure(variant: str, spec: dict[str, Any]) -> dict[str, int]:
    payload = json.dumps({"variant": variant, "spec": spec})
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.perf.memory", payload],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_ratio(spec: dict[str, Any], proxies: tuple[str, ...], rounds: int) -> dict[str, Any]:
    """Interleaved fresh processes: train, plan(p1), plan(p2), ... per round; medians in MB."""
    runs: dict[str, list[dict[str, int]]] = {"train": []} | {p: [] for p in proxies}
    for _ in range(rounds):
        runs["train"].append(measure("train", spec))
        for p in proxies:
            runs[p].append(measure("plan", spec | {"proxy": p}))
    mb = {name: _summary(rs) for name, rs in runs.items()}
    train = mb["train"]
    ratio = {p: rounded(mb[p]["above_imports_mb"] / train["above_imports_mb"]) for p in proxies}
    return {
        "ratio": max(ratio.values()),
        "by_proxy": ratio,
        "peak_rss_ratio": {p: rounded(mb[p]["peak_mb"] / train["peak_mb"]) for p in proxies},
        "working_set_ratio": {p: rounded(mb[p]["working_mb"] / train["working_mb"]) for p in proxies},
        "mb": mb,
        "rounds": rounds,
    }


def _summary(runs: list[dict[str, int]]) -> dict[str, float]:
    def mb(key: str, base: str | None = None) -> float:
        return rounded(median([(r[key] - (r[base] if base else 0)) / 1024 for r in runs]), 1)

    return {
        "peak_mb": mb("peak_kb"),
        "above_imports_mb": mb("peak_kb", "imports_kb"),
        "working_mb": mb("peak_kb", "loaded_kb"),
    }


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(json.dumps(child(args["variant"], args["spec"])))
