"""Merge per-run JSON files into quality-<task>.json, a Markdown table and a PNG plot."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.quality.arms import ALL_TYPES as TYPES
from benchmarks.quality.arms import PRUNE_TOP, arm_names, family_of
from benchmarks.quality.stats import bootstrap_ci95, holm, paired, wider
from heterolora.architectures import site_type

# Round 4 (docs/quality.md): the Holm family is the two candidates, each against arm 1 and arm 2.
CANDIDATES = ("heterolora", "heterolora_init")  # arms 3 and 4
COMPARATORS = ("uniform_all", "uniform_recipe")  # arm 1 (the goal), arm 2 (the recipe without the plan)
DEFAULT_ARM = "heterolora"  # the arm that equals what the shipped default does (ranks, training recipe)


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
        epochs = min(len(r["accuracy"]) for r in group)
        arms.append(
            {
                "name": label,
                "kind": group[0]["kind"],
                "family": group[0].get("family") or family_of(group[0]["name"]),
                "lr": sorted({r.get("lr") or r["settings"]["lr"] for r in group}),
                "lora_params": sorted({r["lora_params"] for r in group}),
                "head_params": group[0]["head_params"],
                "seeds": [r["seed"] for r in group],
                "accuracy": [r["accuracy"][-1] for r in group],
                "f1": [r["f1"][-1] for r in group],
                "accuracy_best": [r["accuracy"][i] for r, i in zip(group, best, strict=True)],
                "f1_best": [r["f1"][i] for r, i in zip(group, best, strict=True)],
                "accuracy_epoch1": [r["accuracy"][0] for r in group],
                "accuracy_by_epoch": [
                    round(statistics.fmean(r["accuracy"][e] for r in group), 3) for e in range(epochs)
                ],
                "best_epoch": [i + 1 for i in best],
                "plan_seconds": round(statistics.fmean(r["plan_seconds"] for r in group), 3),
                "train_seconds": round(statistics.fmean(r["train_seconds"] for r in group), 1),
                "rank_by_type": rank_by_type(group[0].get("ranks", {})),
                "training": group[0].get("training"),
            }
        )
    for arm in arms:  # one number when every seed had the same budget (plans may differ per seed) and rate
        for key in ("lora_params", "lr"):
            arm[key] = arm[key][0] if len(arm[key]) == 1 else arm[key]
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
    # a tie goes to uniform_all, the budget's own baseline
    return max(base, key=lambda a: (_mean_sd(a["accuracy"])[0], a["name"] == "uniform_all"))["name"] if base else None


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


def compare(arm: dict[str, Any], base: dict[str, Any]) -> None:
    """The round-3 statistics of `arm` against the baseline, set on `arm` (Holm comes after)."""
    final = dict(zip(base["seeds"], base["accuracy"], strict=True))
    stats = paired(dict(zip(arm["seeds"], arm["accuracy"], strict=True)), final)
    arm["paired_ci95"] = stats["ci95"]
    arm["wilcoxon_p"] = stats["wilcoxon_p"]
    arm["wins"] = [stats["wins"], stats["n"]]
    # the second way to win: the arm after epoch 1 against the baseline after its last epoch
    early = paired(dict(zip(arm["seeds"], arm["accuracy_epoch1"], strict=True)), final)
    arm["epoch1_vs_baseline_final"] = {k: early[k] for k in ("n", "mean", "ci95", "wins")}
    target = statistics.fmean(base["accuracy"])
    reached = [e + 1 for e, acc in enumerate(arm["accuracy_by_epoch"]) if acc >= target]
    arm["epoch_reaching_baseline"] = reached[0] if reached else None


def build_report(task: str, runs: list[dict[str, Any]], command: str) -> dict[str, Any]:
    arms = merge_arms(runs)
    first = runs[0]
    baseline = stronger_baseline(arms)
    base = next((a for a in arms if a["name"] == baseline), None)
    for arm in arms:
        if base is not None and arm is not base:
            arm["paired_delta"] = paired_delta(arm, base)
            compare(arm, base)
    round4 = versus_all(arms, runs) and any("training" in r for r in runs)
    family = [a for a in arms if a["name"] in CANDIDATES] if round4 else None
    adjusted = holm({a["name"]: a.get("wilcoxon_p") for a in (family or arms) if a is not base})
    for arm in arms:
        if arm is not base:
            p = adjusted.get(arm["name"])
            arm["wilcoxon_p_holm"] = None if p is None else round(p, 5)
    return {
        "task": task,
        "command": command,
        "commands": sorted({r.get("command", "") for r in runs} - {""}),
        "baseline": baseline,
        "epochs_reported": "last",
        "units": "percent",
        "split": first["split"],
        "settings": first["settings"],
        "settings_vary": any(_schedule(r) != _schedule(first) for r in runs),  # the rate has its own column
        "sizes": first["sizes"],
        "baseline_final_mean": round(statistics.fmean(base["accuracy"]), 3) if base else None,
        "arms": arms,
        "lr_pick": lr_pick(arms) if first["split"] == "train-heldout" else None,
        "sweep_pick": sweep_pick(arms) if first["split"] == "train-heldout" else None,
        "holm_family": "candidates" if family is not None else "all arms",
        "default_arm": DEFAULT_ARM if any(a["name"] == DEFAULT_ARM for a in arms) else None,
    }


def _predictions(runs: list[dict[str, Any]], label: str, epoch: int) -> dict[int, list[int]]:
    return {r["seed"]: r["predictions"][epoch] for r in runs if r["arm"] == label and "predictions" in r}


def versus_all(arms: list[dict[str, Any]], runs: list[dict[str, Any]]) -> bool:
    """Set `versus` on each candidate: its statistics against arm 1 and arm 2, with Holm over the
    candidates per comparator. True when the report has round-4 comparisons (then the Holm family of
    the arm-level p is the candidates)."""
    by_name = {a["name"]: a for a in arms}
    found = False
    for other in COMPARATORS:
        if other not in by_name:
            continue
        done = {}
        for name in CANDIDATES:
            if name in by_name:
                done[name] = versus(by_name[name], by_name[other], runs)
                by_name[name].setdefault("versus", {})[other] = done[name]
        adjusted = holm({n: v["wilcoxon_p"] for n, v in done.items()})
        for name, v in done.items():
            v["wilcoxon_p_holm"] = None if adjusted[name] is None else round(adjusted[name], 5)
        found = found or bool(done)
    return found


def versus(arm: dict[str, Any], other: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`arm` − `other` on their shared seeds (last epoch, and after epoch 1): paired mean, seed
    t-interval, exact Wilcoxon p, two-way bootstrap interval from the per-example predictions, and
    the rule's interval (the wider of the two)."""
    out: dict[str, Any] = {}
    for key, field, epoch in (("last", "accuracy", -1), ("epoch1", "accuracy_epoch1", 0)):
        stats = paired(
            dict(zip(arm["seeds"], arm[field], strict=True)), dict(zip(other["seeds"], other[field], strict=True))
        )
        gold = next((r["gold"] for r in runs if r["arm"] == arm["name"] and "gold" in r), None)
        boot = None
        if gold is not None:
            boot = bootstrap_ci95(
                _predictions(runs, arm["name"], epoch), _predictions(runs, other["name"], epoch), gold
            )
        entry = {k: stats[k] for k in ("n", "mean", "sd", "wilcoxon_p", "wins")}
        entry["ci95_t"] = stats["ci95"]
        entry["ci95_bootstrap"] = [round(boot[0], 3), round(boot[1], 3)] if boot else None
        entry["ci95_rule"] = wider(entry["ci95_t"], entry["ci95_bootstrap"])
        out[key] = entry
    return {**out["last"], "epoch1": out["epoch1"]}


def sweep_pick(arms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per sweep family (docs/quality.md, round 4): the grid points ranked by seed 0 (the top
    PRUNE_TOP[family] get seed 1), and the pick: the highest mean among the points with the most seeds;
    ties go to the smaller B rate (A rate x ratio), then the smaller ratio."""
    out = {}
    for family in sorted({a["family"] for a in arms} & set(PRUNE_TOP)):
        points = [a for a in arms if a["family"] == family]

        def b_rate(a: dict[str, Any]) -> tuple[float, float]:
            t = a.get("training") or {}
            ratio = float(t.get("lora_plus_ratio") or 1)
            return float(t.get("learning_rate") or 0) * ratio, ratio

        seed0 = {a["name"]: a["accuracy"][a["seeds"].index(0)] for a in points if 0 in a["seeds"]}
        ranked = sorted((a for a in points if a["name"] in seed0), key=lambda a: (-seed0[a["name"]], *b_rate(a)))
        most = max(len(a["seeds"]) for a in points)
        full = [a for a in points if len(a["seeds"]) == most]
        best = min(full, key=lambda a: (-round(statistics.fmean(a["accuracy"]), 6), *b_rate(a)))
        out[family] = {
            "seed0_ranking": [[a["name"], seed0[a["name"]]] for a in ranked],
            "seed1_for": [a["name"] for a in ranked[: PRUNE_TOP[family]]],
            "pick": best["name"] if most >= 2 else None,
            "pick_training": best.get("training") if most >= 2 else None,
            "mean_accuracy": {a["name"]: round(statistics.fmean(a["accuracy"]), 3) for a in full},
            "seeds": most,
        }
    return out


def _schedule(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run["settings"].items() if k != "lr"}


def lr_pick(arms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family, the learning rate with the highest mean hold-out accuracy (last epoch) over its
    arms and seeds; a tie goes to the smaller rate (docs/quality.md, round 3 protocol)."""
    by_family: dict[str, dict[float, list[float]]] = {}
    for arm in arms:
        if isinstance(arm["lr"], float | int):
            by_family.setdefault(arm["family"], {}).setdefault(float(arm["lr"]), []).extend(arm["accuracy"])
    picks = {}
    for family, by_lr in sorted(by_family.items()):
        means = {lr: round(statistics.fmean(acc), 3) for lr, acc in sorted(by_lr.items())}
        best = max(means.values())
        picks[family] = {
            "lr": min(lr for lr, m in means.items() if m == best),
            "mean_accuracy": {f"{lr:g}": m for lr, m in means.items()},
            "runs": {f"{lr:g}": len(acc) for lr, acc in by_lr.items()},
        }
    return picks


def markdown(report: dict[str, Any]) -> str:
    base = next((a for a in report["arms"] if a["name"] == report["baseline"]), None)
    ref = _mean_sd(base["accuracy"])[0] if base else float("nan")
    s = report["settings"]
    schedule = f"{s['epochs']} epochs, batch {s['batch_size']}, max length {s['max_length']}, head {s.get('head')}"
    if report.get("settings_vary"):
        schedule = "schedule and head as recorded in each run file"
    lines = [
        f"# Quality benchmark: {report['task'].upper()} ({report['split']}, {report['sizes']['eval']} examples)",
        "",
        f"MiniLM-L6, {schedule}. "
        f"Accuracy and F1 in %, mean ± sd over seeds; 'last' = final epoch, 'best' = best epoch, 'ep 1' = after "
        f"epoch 1. Δ = last-epoch mean accuracy minus the stronger baseline ({report['baseline']}); paired Δ = "
        "mean over shared seeds of (arm − baseline) on the same seed ± sd, with its 95 % t-interval; p = exact "
        "Wilcoxon signed-rank, two-sided, and Holm-corrected across the arms of this table; wins = seeds where the "
        "arm is ahead; 'reaches' = first epoch whose mean accuracy reaches the baseline's final mean.",
        "",
        "| arm | kind | lr | LoRA params | head params | seeds | acc last | acc ep 1 | acc best | F1 last | Δ acc "
        "| paired Δ [95 % CI] | p (Holm) | wins | reaches | plan s | train s "
        f"| Σ rank {'/'.join(TYPES)} (seed {report['arms'][0]['seeds'][0]}) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report["arms"]:
        delta = "–" if math.isnan(ref) else f"{_mean_sd(a['accuracy'])[0] - ref:+.2f}"
        params = a["lora_params"] if isinstance(a["lora_params"], int) else "/".join(map(str, a["lora_params"]))
        lr = a.get("lr")
        lr_text = f"{lr:g}" if isinstance(lr, float | int) else "/".join(f"{x:g}" for x in lr or [])
        wins = f"{a['wins'][0]}/{a['wins'][1]}" if a.get("wins") else "–"
        reaches = "–" if a is base or a.get("epoch_reaching_baseline") is None else a["epoch_reaching_baseline"]
        lines.append(
            f"| {a['name']} | {a['kind']} | {lr_text} | {params} | {a['head_params']} | {len(a['seeds'])} "
            f"| {_pm(a['accuracy'])} | {_pm(a.get('accuracy_epoch1', []))} | {_pm(a['accuracy_best'])} "
            f"| {_pm(a['f1'])} | {delta} | {_paired_text(a)} | {_p_text(a)} | {wins} "
            f"| {reaches} | {a['plan_seconds']:.1f} | {a['train_seconds']:.0f} "
            f"| {'/'.join(str(a['rank_by_type'].get(t, 0)) for t in TYPES)} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    runs = [c for c in report.get("commands", []) if c != report["command"]]
    if runs:  # the benchmark runs in parts; these produced the run files merged here
        lines += ["Runs:", "", *(f"- `{c}`" for c in runs), ""]
    if report.get("sweep_pick"):
        lines += ["Round-4 sweep per family (hold-out accuracy after the last epoch; docs/quality.md):", ""]
        lines += ["| family | seed 0, best first | seed 1 for | pick (mean over seeds 0, 1) |", "|---|---|---|---|"]
        for family, pick in report["sweep_pick"].items():
            ranking = ", ".join(f"{name} {acc:.2f}" for name, acc in pick["seed0_ranking"])
            chosen = (
                f"{pick['pick']} ({pick['mean_accuracy'][pick['pick']]:.2f})" if pick["pick"] else "– (seed 1 to run)"
            )
            lines.append(f"| {family} | {ranking} | {', '.join(pick['seed1_for'])} | {chosen} |")
        lines.append("")
    if report.get("lr_pick"):
        lines += ["Learning rate per family (hold-out, mean last-epoch accuracy over arms and seeds):", ""]
        lines += ["| family | picked | mean accuracy by lr | runs by lr |", "|---|---|---|---|"]
        for family, pick in report["lr_pick"].items():
            means = ", ".join(f"{lr}: {m:.2f}" for lr, m in pick["mean_accuracy"].items())
            runs_by_lr = ", ".join(f"{lr}: {n}" for lr, n in pick["runs"].items())
            lines.append(f"| {family} | {pick['lr']:g} | {means} | {runs_by_lr} |")
        lines.append("")
    return "\n".join(lines)


def _pm(values: list[float]) -> str:
    if not values:
        return "–"
    mean, sd = _mean_sd(values)
    return f"{mean:.2f} ± {sd:.2f}"


def _paired_text(arm: dict[str, Any]) -> str:
    pd = arm.get("paired_delta")
    if not pd or not pd["n"]:
        return "–"
    ci = arm.get("paired_ci95")
    interval = f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
    return f"{pd['mean']:+.2f} ± {pd['sd']:.2f}{interval}"


def _p_text(arm: dict[str, Any]) -> str:
    p, holm_p = arm.get("wilcoxon_p"), arm.get("wilcoxon_p_holm")
    return "–" if p is None else f"{p:.3g} ({holm_p:.3g})"


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
