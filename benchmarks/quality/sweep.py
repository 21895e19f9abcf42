"""The hold-out sweep of docs/quality.md ("Round 4 protocol"), one run at a time: every grid point of
the families at seed 0, then seed 1 for each family's best points (the pruning rule, `sweep_pick.seed1_for` of the
merged report). Runs whose file exists are skipped, so the sweep resumes where it stopped.

    python -m benchmarks.quality.sweep --family adamw,recipe_plan            # in this order
    python -m benchmarks.quality.sweep --family recipe_plan --dry-run        # print the commands
    python -m benchmarks.quality.sweep --family adamw --stop-at 09:20        # no run may end later
    python -m benchmarks.quality.sweep --family init                         # after recipe_plan's pick

Each run is `python -m benchmarks.quality --task mrpc --arms ARM --seeds S --sweep-lr A --ratio R
--workers 1` in its own process, so a killed sweep loses at most the run in progress.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import RESULTS
from benchmarks.quality.arms import PRUNE_TOP, ArmSpec

SWEPT_ARM = {"adamw": "uniform_all", "recipe_uniform": "uniform_recipe", "recipe_plan": "heterolora"}
RECIPE_GRID = ((1, 1e-3), (4, 2.5e-4), (4, 5e-4), (4, 1e-3), (16, 2.5e-4), (16, 5e-4))  # (ratio, A rate)
GRID: dict[str, tuple[tuple[float, float], ...]] = {
    "adamw": tuple((1, lr) for lr in (5e-4, 1e-3, 2e-3, 4e-3)),
    "recipe_uniform": RECIPE_GRID,
    "recipe_plan": RECIPE_GRID,
}
# The init family, at recipe_plan's pick: step rule x head warm-up.
INIT_STEPS = ("line_search", "lora_one")
INIT_WARMUPS = (0, 64)
RUN_MINUTES = 15  # a run is not started with less time than this left before --stop-at
Point = tuple[str, float, float]  # arm spec, LoRA+ ratio, A rate


def grid(family: str, out: Path = RESULTS) -> list[Point]:
    """The family's grid points; the init family's come from recipe_plan's pick (needs its seed 1)."""
    if family != "init":
        return [(SWEPT_ARM[family], ratio, lr) for ratio, lr in GRID[family]]
    pick = _report(out).get("recipe_plan", {}).get("pick_training")
    if not pick:
        raise SystemExit("init: recipe_plan has no pick yet (its seed-1 runs come first)")
    ratio, lr = float(pick["lora_plus_ratio"]), float(pick["learning_rate"])
    arms = [f"heterolora_init:init_step={s}/head_warmup_steps={w}" for s in INIT_STEPS for w in INIT_WARMUPS]
    return [(arm, ratio, lr) for arm in arms]


def command(point: Point, seed: int, task: str = "mrpc") -> list[str]:
    arm, ratio, lr = point
    return [sys.executable, "-m", "benchmarks.quality", "--task", task, "--arms", arm, "--seeds", str(seed),
            "--sweep-lr", f"{lr:g}", "--ratio", f"{ratio:g}", "--workers", "1"]  # fmt: skip


def label(point: Point) -> str:
    arm, ratio, lr = point
    return f"{ArmSpec.parse(arm).label}__lr-{lr:g}__ratio-{ratio:g}"


def run_path(point: Point, seed: int, out: Path = RESULTS) -> Path:
    return out / "quality-sweep-runs" / "mrpc" / f"{label(point)}-s{seed}.json"


def _report(out: Path) -> dict:
    path = out / "quality-sweep-mrpc.json"
    return (json.loads(path.read_text()).get("sweep_pick") or {}) if path.is_file() else {}


def seed1_points(family: str, out: Path = RESULTS) -> list[Point]:
    """The points that get seed 1: the top PRUNE_TOP[family] at seed 0, from the merged report."""
    chosen = set(_report(out).get(family, {}).get("seed1_for", []))
    done = [p for p in grid(family, out) if run_path(p, 0, out).is_file()]
    picked = [p for p in done if label(p) in chosen]
    if len(picked) != min(PRUNE_TOP[family], len(done)):
        raise SystemExit(f"{family}: the report names {sorted(chosen)}, not the top {PRUNE_TOP[family]} of the grid")
    return picked


def deadline(text: str | None) -> float | None:
    if not text:
        return None
    now = datetime.now(UTC)
    hour, minute = (int(x) for x in text.split(":"))
    return now.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


def run(cmd: list[str], stop: float | None, dry: bool) -> bool:
    """Run one command (within the deadline); False when there is no time left for it."""
    print(" ".join(cmd[1:]) if dry else f"[{datetime.now(UTC):%H:%M}] {' '.join(cmd[1:])}", flush=True)
    if dry:
        return True
    left = None if stop is None else stop - time.time()
    if left is not None and left < RUN_MINUTES * 60:
        print(f"stopping: {left / 60:.0f} minutes left before the deadline", flush=True)
        return False
    try:
        subprocess.run(cmd, check=False, timeout=left)
    except subprocess.TimeoutExpired:
        print("the run reached the deadline and was stopped", flush=True)
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="adamw,recipe_plan,recipe_uniform", help="comma-separated, run in order")
    ap.add_argument("--stop-at", default=None, help="HH:MM UTC: start no run that could end later")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    stop = deadline(args.stop_at)
    families = args.family.split(",")
    for seed in (0, 1):  # every family's seed 0 first, then their seed 1
        for family in families:
            if seed == 1 and args.dry_run:
                print(f"# then seed 1 for the top {PRUNE_TOP[family]} of {family} at seed 0", flush=True)
                continue
            for point in grid(family) if seed == 0 else seed1_points(family):
                if run_path(point, seed).is_file():
                    continue
                if not run(command(point, seed), stop, args.dry_run):
                    return


if __name__ == "__main__":
    main()
