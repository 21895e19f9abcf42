"""Write the scale section: merged into benchmarks/results/perf.json under "scale" (other sections
untouched) and benchmarks/results/perf-scale.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.perf.memory_model import gpu_table

# Streamed plans are judged by agreement with exact plans (overlap); the top-rank energy error is
# reported only: the allocator compares marginal gains, which a uniform error leaves in order
# (docs/performance.md, Scale).
TARGETS = {"memory_rank_energy": 1.1, "memory_any_proxy": 1.3, "time": 1.2, "overlap": 0.95}


def model_check(result: dict[str, Any]) -> dict[str, float]:
    """Predicted ÷ measured peak MB above imports, per measured variant the model predicts."""
    return {k: round(p / result["mb"][k], 3) for k, p in result["predicted_mb"].items() if k in result["mb"]}


def write_report(out: Path, results: dict[str, Any], command: str, wall_s: float) -> None:
    for r in results.values():
        r["memory_model_ratio"] = model_check(r)
        spec = r["spec"]  # per-site lists are inputs, not results: keep the JSON readable
        spec.pop("cost_per_rank", None)
        spec["shape"] = {k: v for k, v in spec["shape"].items() if k != "sites"} | {
            "sites": len(spec["shape"].get("sites", []))
        }
    for r in results.values():
        r["command"] = command
    out.mkdir(parents=True, exist_ok=True)
    previous = read_section(out)
    models = previous.get("models", {}) | results  # a run of some models keeps the others
    save_section(out, {"command": command, "wall_s": wall_s, "models": models})


def read_section(out: Path) -> dict[str, Any]:
    path = out / "perf.json"
    return json.loads(path.read_text()).get("scale", {}) if path.is_file() else {}


def save_section(out: Path, section: dict[str, Any]) -> None:
    """Write the scale section (targets and GPU table recomputed) into perf.json and perf-scale.md."""
    section = section | {"targets": TARGETS, "gpus": gpu_table()}
    path = out / "perf.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged["scale"] = section
    path.write_text(json.dumps(merged, indent=2) + "\n")
    (out / "perf-scale.md").write_text(markdown(section))


def markdown(section: dict[str, Any]) -> str:
    lines = [
        "# Scale: planning memory and time against a LoRA training step",
        "",
        "Memory ratio = peak RSS above imports of planning ÷ that of one PEFT LoRA step at the planned ranks",
        "(AdamW, same batch, same dtype), each in a fresh process. Time ratio = scoring CPU time ÷ K plain",
        "forward+backward passes (every parameter trainable). `stream`: sketch width k = 2r+1 (default);",
        "`stream-k4`: k = 4r+1. `+init`: the plan also builds its gradient init (A/B tensors, issue 14).",
        f"Targets: memory ≤ {TARGETS['memory_rank_energy']} (rank_energy), ≤ {TARGETS['memory_any_proxy']} (every",
        f"proxy); time ≤ {TARGETS['time']}; streamed plans ≥ {TARGETS['overlap']:.0%} alike (energy error reported).",
        "",
    ]
    for name, r in section["models"].items():
        params = r["spec"]["shape"]["params"]
        lines += [
            f"## {name}: {params / 1e6:.0f}M parameters, {r['tokens_per_batch']} tokens per batch, "
            f"K = {r['spec']['config']['num_batches']}",
            "",
            f"LoRA step: {r['train_mb']:.0f} MB above imports (model loaded: {r['loaded_mb']:.0f} MB); "
            f"K plain passes: {r['plain_s']} s CPU.",
            "",
            "| variant | peak MB | memory ratio | time ratio | passes | model predicts MB |",
            "|---|---|---|---|---|---|",
        ]
        for k, ratio in r["memory_ratio"].items():
            predicted = r["predicted_mb"].get(k, "")
            lines.append(
                f"| {k} | {r['mb'][k]:.0f} | {ratio:.3f} | {r['time_ratio'][k]:.3f} | {r['passes'][k]} | {predicted} |"
            )
        lines.append(f"| train (LoRA step) | {r['mb']['train']:.0f} | 1 | | | {r['predicted_mb']['train']} |")
        a, a2 = r["agreement"], r["agreement_k4"]
        lines += [
            "",
            "Agreement with exact (rank_energy): top-rank energy worst relative error"
            f" {a['top_energy_max_rel_err']:.4f},"
            f" plan overlap {a['plan_overlap']:.3f} (k = 4r+1: {a2['top_energy_max_rel_err']:.4f},"
            f" {a2['plan_overlap']:.3f}).",
            f"Memory model ÷ measured: {r['memory_model_ratio']}.",
            f"Command: `{r.get('command', section['command'])}`",
            "",
        ]
    lines += [
        "## Smallest GPU by the memory model (bf16 weights, 8 x 512 tokens per batch, r_max = 64)",
        "",
        "| model | LoRA step GB | exact GB | stream GB | stream k=4r+1 GB | LoRA step | exact | stream |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in section["gpus"]:
        lines.append(
            f"| {g['model']} | {g['train']} | {g['rank_energy/exact']} | {g['rank_energy/stream']} "
            f"| {g['rank_energy/stream-k4']} | {g['gpu train']} | {g['gpu rank_energy/exact']} "
            f"| {g['gpu rank_energy/stream']} |"
        )
    lines += ["", f"Last run: `{section['command']}` ({section['wall_s']} s)", ""]
    return "\n".join(lines)
