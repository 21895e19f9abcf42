"""The gora init's step, as the line search chose it, for each seed of a quality run: the arm's plan
is built exactly as the run builds it (same model, scoring batches and seed), without training.

    python -m benchmarks.quality.init_steps --task mrpc --seeds 0,1,2 [--pilot] [--arm heterolora_init]

A step of 0 means that no candidate step lowered the loss on the scoring batch, so the arm trained
from the standard init (B = 0), exactly as its zero-init twin. Writes
`benchmarks/results/quality-init-steps-<task>[-holdout].json`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from benchmarks import GLUE, RESULTS
from benchmarks.quality.arms import ArmSpec, arm_plan
from benchmarks.quality.train import Settings, prepare
from heterolora.plans import Plan


def rebuilt_plan(task: str, arm: str, seed: int, settings: Settings) -> Plan:
    """The plan the run of (task, arm, seed) trained from, built as the run builds it."""
    spec = ArmSpec.parse(arm)
    prep = prepare(task, spec, seed, str(GLUE), settings)
    return arm_plan(spec, prep.model, prep.scoring, seed, prep.settings.lr)


def step_row(seed: int, plan: Plan) -> dict:
    assert plan.training is not None
    return {"seed": seed, "init_step": plan.training.init_step, "rule": plan.training.init_step_rule}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--arm", default="heterolora_init")
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--pilot", action="store_true", help="the train hold-out split, as the sweep ran")
    args = ap.parse_args()
    settings = replace(Settings(), pilot=args.pilot)  # one thread, as the runs
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(step_row(seed, rebuilt_plan(args.task, args.arm, seed, settings)))
        print(json.dumps(rows[-1]), flush=True)
    name = f"quality-init-steps-{args.task}{'-holdout' if args.pilot else ''}.json"
    command = (
        "python -m benchmarks.quality.init_steps "
        + " ".join(f"--{k} {v}" for k, v in (("task", args.task), ("arm", args.arm), ("seeds", args.seeds)))
        + (" --pilot" if args.pilot else "")
    )
    (RESULTS / name).write_text(json.dumps({"arm": args.arm, "steps": rows, "command": command}, indent=1) + "\n")


if __name__ == "__main__":
    main()
