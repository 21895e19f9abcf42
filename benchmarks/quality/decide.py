"""The decision rules of docs/quality.md, applied to the merged reports as they stand: which
candidate, if any, becomes the default.

    python -m benchmarks.quality.decide            # round 4: quality-mrpc.json and quality-sst2.json
    python -m benchmarks.quality.decide --round 3 --results benchmarks/results/round3   # MRPC + RTE
    python -m benchmarks.quality.decide --versus dynamic_wide,dynamic   # arm 8 - arm 6 (amendment)

The rule was fixed in a commit before the final runs; this module only reads it mechanically, so the
verdict in the README can be reproduced from the committed run files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.quality.stats import paired

CANDIDATES = ("heterolora", "heterolora_init", "uniform_all_init")  # arms 2-4
GOAL_POINTS = 1.6  # way 1: paired mean difference, final epoch
ALPHA = 0.05  # way 1: Holm-corrected Wilcoxon p
WAY2_FLOOR = -1.0  # way 2: lower end of the CI of (arm after epoch 1 - baseline after epoch 3)
SEEDS_REQUIRED = {"mrpc": 10, "rte": 5}


def _arms(report: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in report["arms"]} if report else {}


def judge(name: str, mrpc: dict[str, dict[str, Any]], rte: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One candidate against the rule; every test is reported, with why it fails."""
    arm, out = mrpc.get(name) or {}, {"arm": name, "reasons": []}
    n_seeds = len(arm.get("seeds", []))
    out["complete"] = n_seeds >= SEEDS_REQUIRED["mrpc"]
    if not out["complete"]:
        out["reasons"].append(f"MRPC: {n_seeds} of {SEEDS_REQUIRED['mrpc']} seeds")
    delta, ci, p = arm.get("paired_delta", {}), arm.get("paired_ci95"), arm.get("wilcoxon_p_holm")
    out["way1"] = bool(
        delta.get("mean") is not None
        and delta["mean"] >= GOAL_POINTS
        and ci
        and ci[0] > 0
        and p is not None
        and p < ALPHA
    )
    if not out["way1"]:
        out["reasons"].append(f"way 1: paired Δ {delta.get('mean')} (goal ≥ {GOAL_POINTS}), CI {ci}, Holm p {p}")
    early = arm.get("epoch1_vs_baseline_final") or {}
    early_ci = early.get("ci95")
    out["way2"] = bool(early.get("mean") is not None and early["mean"] >= 0 and early_ci and early_ci[0] >= WAY2_FLOOR)
    if not out["way2"]:
        out["reasons"].append(f"way 2: epoch 1 − baseline final {early.get('mean')}, CI {early_ci}")
    on_rte = rte.get(name) or {}
    rte_ci, rte_n = on_rte.get("paired_ci95"), len(on_rte.get("seeds", []))
    out["rte_not_worse"] = bool(rte_ci and rte_ci[1] >= 0 and rte_n >= SEEDS_REQUIRED["rte"])
    if not out["rte_not_worse"]:
        out["reasons"].append(f"RTE: {rte_n} seeds, paired CI {rte_ci} (upper end must be ≥ 0)")
    out["meets_goal"] = (out["way1"] or out["way2"]) and out["rte_not_worse"] and out["complete"]
    out["mrpc_paired_delta"] = delta.get("mean")
    return out


def decide(mrpc: dict[str, Any], rte: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict: the chosen default (the larger MRPC paired Δ, way 1 before way 2) or None."""
    by_name, rte_arms = _arms(mrpc), _arms(rte)
    verdicts = [judge(name, by_name, rte_arms) for name in CANDIDATES]
    winners = sorted((v for v in verdicts if v["meets_goal"]), key=lambda v: (v["way1"], v["mrpc_paired_delta"]))
    return {"candidates": verdicts, "chosen": winners[-1]["arm"] if winners else None}


# Round 4 ("Default rule"): the candidate with the larger MRPC paired mean against arm 1 is judged.
ROUND4_CANDIDATES = ("heterolora", "heterolora_init")
ROUND4_SEEDS = 10  # arms 3 and 4 on each task
SST2_FLOOR = -0.5  # the lower end of the SST-2 interval against arm 1, points


def decide4(mrpc: dict[str, Any], sst2: dict[str, Any] | None) -> dict[str, Any]:
    """The round-4 verdict. Reads each candidate's `versus.uniform_all` (the rule's interval = the wider
    of the seed t-interval and the two-way bootstrap; Holm over the two candidates)."""
    on_mrpc, on_sst2 = _arms(mrpc), _arms(sst2)
    rows = []
    for name in ROUND4_CANDIDATES:
        v = (on_mrpc.get(name) or {}).get("versus", {}).get("uniform_all") or {}
        w = (on_sst2.get(name) or {}).get("versus", {}).get("uniform_all") or {}
        rows.append({"arm": name, "mrpc": v, "sst2": w})
    known = [r for r in rows if r["mrpc"].get("mean") is not None]
    if not known:
        return {"judged": None, "chosen": None, "reasons": ["no candidate has MRPC results"], "candidates": rows}
    top = max(known, key=lambda r: r["mrpc"]["mean"])
    mrpc_v, sst2_v, reasons = top["mrpc"], top["sst2"], []
    if mrpc_v.get("n", 0) < ROUND4_SEEDS or sst2_v.get("n", 0) < ROUND4_SEEDS:
        reasons.append(f"seeds: MRPC {mrpc_v.get('n', 0)}, SST-2 {sst2_v.get('n', 0)} of {ROUND4_SEEDS}")
    interval, p = mrpc_v.get("ci95_rule"), mrpc_v.get("wilcoxon_p_holm")
    if not (interval and interval[0] > 0):
        reasons.append(f"MRPC: interval {interval} does not lie above 0")
    if p is None or p >= ALPHA:
        reasons.append(f"MRPC: Holm-corrected Wilcoxon p {p} is not < {ALPHA}")
    sst2_interval = sst2_v.get("ci95_rule")
    if not (sst2_interval and sst2_interval[0] >= SST2_FLOOR):
        reasons.append(f"SST-2: interval {sst2_interval}, lower end must be ≥ {SST2_FLOOR}")
    chosen = None if reasons else top["arm"]
    return {"judged": top["arm"], "chosen": chosen, "reasons": reasons, "candidates": rows}


def versus(mrpc: dict[str, Any], arm: str, other: str) -> dict[str, Any]:
    """`arm` minus `other` on the MRPC seeds both ran (final epoch): the paired statistics, and
    whether the interval lies above 0 (the amendment's rule for `heterolora.dynamic`'s rank)."""
    by_name = _arms(mrpc)
    if arm not in by_name or other not in by_name:
        raise SystemExit(f"--versus: both arms must be in the report (have {sorted(by_name)})")

    def by_seed(name: str) -> dict[int, float]:
        return dict(zip(by_name[name]["seeds"], by_name[name]["accuracy"], strict=True))

    out = paired(by_seed(arm), by_seed(other))
    out["above_zero"] = bool(out["ci95"] and out["ci95"][0] > 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--versus", help="ARM,OTHER: ARM minus OTHER on MRPC, paired over shared seeds")
    ap.add_argument("--round", type=int, choices=(3, 4), default=4, help="which protocol's rule (default 4)")
    args = ap.parse_args()
    folder = Path(args.results)
    if args.versus:
        arm, _, other = args.versus.partition(",")
        result = versus(json.loads((folder / "quality-mrpc.json").read_text()), arm, other)
        print(f"{arm} − {other}: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        return
    if args.round == 4:
        sst2_path = folder / "quality-sst2.json"
        sst2 = json.loads(sst2_path.read_text()) if sst2_path.is_file() else None
        result = decide4(json.loads((folder / "quality-mrpc.json").read_text()), sst2)
        print(f"judged: {result['judged']}" + "".join(f"\n  - {r}" for r in result["reasons"]))
        print(f"chosen default: {result['chosen'] or 'none; the current default stays'}")
        return
    rte_path = folder / "quality-rte.json"
    mrpc = json.loads((folder / "quality-mrpc.json").read_text())
    verdict = decide(mrpc, json.loads(rte_path.read_text()) if rte_path.is_file() else None)
    for v in verdict["candidates"]:
        state = "MEETS the goal" if v["meets_goal"] else "does not meet the goal"
        print(f"{v['arm']}: {state}" + "".join(f"\n  - {r}" for r in v["reasons"]))
    print(f"chosen default: {verdict['chosen'] or 'none; the current default stays'}")


if __name__ == "__main__":
    main()
