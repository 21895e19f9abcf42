"""Run many (task, arm, seed) jobs, each in a fresh 1-thread process, and merge their results.

On a small shared CPU two 1-thread processes train faster in total than one 2-thread process, and
a fresh process per job keeps one arm's state (threads, RNG, PEFT hooks) out of the next one.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from benchmarks.quality.train import Settings, run_one

QUICK = Settings(epochs=1, train_limit=32, eval_limit=32, scoring_batches=2, max_length=48)


def run_file(runs_dir: str | Path, arm_label: str, seed: int) -> Path:
    return Path(runs_dir) / f"{arm_label}-s{seed}.json"


def pending_jobs(
    tasks: list[str], arms: list[str], seeds: list[int], runs_root: Path, rerun: bool
) -> list[tuple[str, str, int]]:
    """Seed-major order, so every arm gets seed 0 before any arm gets seed 1."""
    from benchmarks.quality.arms import ArmSpec

    jobs = []
    for task in tasks:
        for seed in seeds:
            for arm in arms:
                label = ArmSpec.parse(arm).label
                if rerun or not run_file(runs_root / task, label, seed).exists():
                    jobs.append((task, arm, seed))
    return jobs


def _job(task: str, arm: str, seed: int, data_dir: str, settings: Settings, out: str, command: str) -> str:
    try:
        record = run_one(task, arm, seed, data_dir, settings, out, command=command)
    except Exception:  # report and let the other jobs finish
        return f"FAILED {task} {arm} s{seed}\n{traceback.format_exc()}"
    return f"done {task} {arm} s{seed}: acc {record['accuracy']} ({record['train_seconds']:.0f}s)"


def run_jobs(
    jobs: list[tuple[str, str, int]], data_dir: str, settings: Settings, runs_root: Path, workers: int, command: str
) -> list[str]:
    """Run `jobs`; returns one status line per job (failures included, with their traceback)."""
    if workers <= 1:
        return [_job(t, a, s, data_dir, settings, str(runs_root / t), command) for t, a, s in jobs]
    lines = []
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = [
            pool.submit(_job, t, a, s, data_dir, replace(settings, threads=1), str(runs_root / t), command)
            for t, a, s in jobs
        ]
        for fut in as_completed(futures):
            lines.append(fut.result())
            print(lines[-1], file=sys.stderr, flush=True)
    return lines
