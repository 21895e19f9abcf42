"""Merge per-run JSON files into quality-<task>.json, a Markdown table and a PNG plot."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.quality.arms import ALL_TYPES as TYPES
from benchmarks.quality.arms import arm_names
from heterolora.architectures import site_type


def load_runs(runs_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def merge_arms(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per arm: per-seed last-epoch and best-epoch accuracy/F1 (percent), in run order."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    order = {name: i for i, name in enumerate(arm_names())}
    for run in sorted(runs, key=lambda r: (order.get(r["name"], len(order)), r["arm"], r["seed"])):
        by_arm.setdefault(run["arm"], []).append(run)
    arms = []
    for label, group in by_arm.items():
        best = [max(range(len(r["accuracy"])), key=lambda i, r=r: r["accuracy"][i]) for r in group]
        arms.append(
            {
                "name": label,
                "kind": group[0]["kind"],
                "lora_params": sorted({r["lora_params"] for r in group}),
                "head_params": group[0]["head_params"],
                "seeds": [r["seed"] for r in group],
                "accuracy": [r["accuracy"][-1] for r in group],
                "f1": [r["f1"][-1] for r in group],
                "accuracy_best": [r["accuracy"][i] for r, i in zip(group, best, strict=True)],
                "f1_best": [r["f1"][i] for r, i in zip(group, best, strict=True)],
                "best_epoch": [i + 1 for i in best],
                "plan_seconds": round(statistics.fmean(r["plan_seconds"] for r in group), 3),
                "train_seconds": round(statistics.fmean(r["train_seconds"] for r in group), 1),
                "rank_by_type": rank_by_type(group[0].get("ranks", {})),
            }
        )
    for arm in arms:  # one number when every seed had the same budget (plans may differ per seed)
        arm["lora_params"] = arm["lora_params"][0] if len(arm["lora_params"]) == 1 else arm["lora_params"]
    return arms


def rank_by_type(ranks: dict[str, int]) -> dict[str, int]:
    """Sum of ranks per site type over the layers, e.g. {"q": 12, "v": 24, ...}."""
    out = dict.fromkeys(TYPES, 0)
    for name, rank in ranks.items():
        kind = site_type(name.split(".", 4)[-1]) or "other"
        out[kind] = out.get(kind, 0) + rank
    return out


def stronger_baseline(arms: list[dict[str, Any]]) -> str | None:
    base = [a for a in arms if a["name"] in ("uniform_qv_r8", "uniform_all")]
    return max(base, key=lambda a: _mean_sd(a["accuracy"])[0])["name"] if base else None


def paired_delta(arm: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Mean of (arm - baseline) last-epoch accuracy over the seeds both have, and how often the arm won.
    Same seed = same LoRA init stream, dropout masks and batch order (the head init is the same for every
    seed), so pairs cancel much of the seed noise."""
    base_acc = dict(zip(base["seeds"], base["accuracy"], strict=True))
    diffs = [a - base_acc[s] for s, a in zip(arm["seeds"], arm["accuracy"], strict=True) if s in base_acc]
    if not diffs:
        return {"mean": None, "sd": None, "wins": 0, "n": 0}
    mean, sd = _mean_sd(diffs)
    return {"mean": round(mean, 3), "sd": round(sd, 3), "wins": sum(d > 0 for d in diffs), "n": len(diffs)}


def build_report(task: str, runs: list[dict[str, Any]], command: str) -> dict[str, Any]:
    arms = merge_arms(runs)
    first = runs[0]
    baseline = stronger_baseline(arms)
    base = next((a for a in arms if a["name"] == baseline), None)
    for arm in arms:
        if base is not None and arm is not base:
            arm["paired_delta"] = paired_delta(arm, base)
    return {
        "task": task,
        "command": command,
        "commands": sorted({r.get("command", "") for r in runs} - {""}),
        "baseline": baseline,
        "epochs_reported": "last",
        "units": "percent",
        "split": first["split"],
        "settings": first["settings"],
        "settings_vary": any(r["settings"] != first["settings"] for r in runs),
        "sizes": first["sizes"],
        "arms": arms,
    }


def markdown(report: dict[str, Any]) -> str:
    base = next((a for a in report["arms"] if a["name"] == report["baseline"]), None)
    ref = _mean_sd(base["accuracy"])[0] if base else float("nan")
    s = report["settings"]
    schedule = f"{s['epochs']} epochs, batch {s['batch_size']}, lr {s['lr']}, max length {s['max_length']}"
    if report.get("settings_vary"):
        schedule = "schedule and head as in each arm's name"
    lines = [
        f"# Quality benchmark: {report['task'].upper()} ({report['split']}, {report['sizes']['eval']} examples)",
        "",
        f"MiniLM-L6, {schedule}. "
        f"Accuracy and F1 in %, mean ± sd over seeds; 'last' = final epoch, 'best' = best epoch. "
        f"Δ = last-epoch mean accuracy minus the stronger baseline ({report['baseline']}); paired Δ = mean over "
        "shared seeds of (arm − baseline) on the same seed ± sd, with the arm's wins.",
        "",
        "| arm | kind | LoRA params | head params | seeds | acc last | acc best | F1 last | Δ acc | paired Δ (wins) "
        f"| plan s | train s | Σ rank {'/'.join(TYPES)} (seed {report['arms'][0]['seeds'][0]}) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report["arms"]:
        acc, acc_sd = _mean_sd(a["accuracy"])
        best, best_sd = _mean_sd(a["accuracy_best"])
        f1, f1_sd = _mean_sd(a["f1"])
        delta = "–" if math.isnan(ref) else f"{acc - ref:+.2f}"
        params = a["lora_params"] if isinstance(a["lora_params"], int) else "/".join(map(str, a["lora_params"]))
        lines.append(
            f"| {a['name']} | {a['kind']} | {params} | {a['head_params']} | {len(a['seeds'])} "
            f"| {acc:.2f} ± {acc_sd:.2f} | {best:.2f} ± {best_sd:.2f} | {f1:.2f} ± {f1_sd:.2f} "
            f"| {delta} | {_paired_text(a)} | {a['plan_seconds']:.1f} | {a['train_seconds']:.0f} "
            f"| {'/'.join(str(a['rank_by_type'].get(t, 0)) for t in TYPES)} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    runs = [c for c in report.get("commands", []) if c != report["command"]]
    if runs:  # the benchmark runs in parts; these produced the run files merged here
        lines += ["Runs:", "", *(f"- `{c}`" for c in runs), ""]
    return "\n".join(lines)


def _paired_text(arm: dict[str, Any]) -> str:
    pd = arm.get("paired_delta")
    if not pd or not pd["n"]:
        return "–"
    return f"{pd['mean']:+.2f} ± {pd['sd']:.2f} ({pd['wins']}/{pd['n']})"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["arms"]
    colors = {"baseline": "tab:gray", "heterolora": "tab:blue", "control": "tab:orange", "peer": "tab:green"}
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(arms) + 2), 4))
    for i, a in enumerate(arms):
        mean = _mean_sd(a["accuracy"])[0]
        ax.bar(i, mean, color=colors.get(a["kind"], "tab:purple"), alpha=0.6)
        ax.scatter([i] * len(a["accuracy"]), a["accuracy"], color="black", s=10, zorder=3)
    base = next((a for a in arms if a["name"] == report["baseline"]), None)
    if base:
        ax.axhline(
            _mean_sd(base["accuracy"])[0], color="red", lw=1, ls="--", label=f"{base['name']} (stronger baseline)"
        )
        ax.legend(loc="lower right", fontsize=8)
    values = [v for a in arms for v in a["accuracy"]]
    ax.set_ylim(min(values) - 3, max(values) + 2)
    ax.set_xticks(range(len(arms)), [a["name"] for a in arms], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy, last epoch (%)")
    ax.set_title(f"{report['task'].upper()}: LoRA arms at an equal budget ({report['split']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(task: str, runs_dir: Path, out_dir: Path, prefix: str, command: str) -> list[Path] | None:
    """Write <prefix>-<task>.{json,md,png} from the run files; None when there are none yet."""
    runs = load_runs(runs_dir)
    if not runs:
        return None
    report = build_report(task, runs, command)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{prefix}-{task}.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text(markdown(report))
    plot(report, paths[2])
    return paths
