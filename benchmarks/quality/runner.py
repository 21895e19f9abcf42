"""Run many (task, arm, seed, lr) jobs, each in a fresh 1-thread process, and merge their results.

On a small shared CPU two 1-thread processes train faster in total than one 2-thread process, and
a fresh process per job keeps one arm's state (threads, RNG, PEFT hooks) out of the next one.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from benchmarks.quality.arms import ArmSpec
from benchmarks.quality.train import Settings, run_label, run_one, with_family_rate

QUICK = Settings(epochs=1, train_limit=32, eval_limit=32, scoring_batches=2, max_length=48)
Job = tuple[str, str, int, float | None]  # task, arm, seed, learning rate (None: the family's)


def run_file(runs_dir: str | Path, arm_label: str, seed: int) -> Path:
    return Path(runs_dir) / f"{arm_label}-s{seed}.json"


# Settings that make two runs of one (arm, seed) different experiments (device and threads do not).
SCHEDULE_FIELDS = ("epochs", "batch_size", "lr", "ratio", "weight_decay", "warmup_ratio", "max_length",
                   "scoring_batches", "train_limit", "eval_limit", "pilot", "head")  # fmt: skip


class StaleRunFile(ValueError):
    """A run file exists for a job but was made under another schedule (e.g. an earlier round)."""


def pending_jobs(
    tasks: list[str],
    arms: list[str],
    seeds: list[int],
    runs_root: Path,
    rerun: bool,
    lrs: list[float | None],
    settings: Settings | None = None,
) -> list[Job]:
    """Seed-major order, so every arm (and rate) gets seed 0 before any gets seed 1. An existing run
    file is kept only if it was made under `settings` (its family's rate resolved); one made under
    another schedule raises StaleRunFile instead of being merged into this round's report."""
    jobs = []
    for task in tasks:
        for seed in seeds:
            for arm in arms:
                for lr in lrs:
                    spec = ArmSpec.parse(arm)
                    ratio = settings.ratio if settings is not None else None
                    path = run_file(runs_root / task, run_label(spec.label, Settings(lr=lr, ratio=ratio)), seed)
                    if rerun or not path.exists():
                        jobs.append((task, arm, seed, lr))
                    elif settings is not None:
                        _check_schedule(path, with_family_rate(replace(settings, lr=lr), spec.name))
    return jobs


def _check_schedule(path: Path, want: Settings) -> None:
    had = json.loads(path.read_text()).get("settings", {})
    differ = {f: (had.get(f), getattr(want, f)) for f in SCHEDULE_FIELDS if had.get(f) != getattr(want, f)}
    if differ:
        diff = ", ".join(f"{f} {old!r} (wanted {new!r})" for f, (old, new) in differ.items())
        raise StaleRunFile(f"{path} was made under another schedule: {diff}; move it away or pass --rerun")


def _job(job: Job, data_dir: str, settings: Settings, out: str, command: str) -> str:
    task, arm, seed, lr = job
    try:
        record = run_one(task, arm, seed, data_dir, replace(settings, lr=lr), out, command=command)
    except Exception:  # report and let the other jobs finish
        return f"FAILED {task} {arm} s{seed} lr {lr}\n{traceback.format_exc()}"
    return f"done {task} {record['arm']} s{seed}: acc {record['accuracy']} ({record['train_seconds']:.0f}s)"


def run_jobs(
    jobs: list[Job], data_dir: str, settings: Settings, runs_root: Path, workers: int, command: str
) -> list[str]:
    """Run `jobs`; returns one status line per job (failures included, with their traceback)."""
    if workers <= 1:
        lines = []
        for job in jobs:
            lines.append(_job(job, data_dir, settings, str(runs_root / job[0]), command))
            print(lines[-1], file=sys.stderr, flush=True)
        return lines
    lines = []
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        one_thread = replace(settings, threads=1)
        futures = [pool.submit(_job, job, data_dir, one_thread, str(runs_root / job[0]), command) for job in jobs]
        for fut in as_completed(futures):
            lines.append(fut.result())
            print(lines[-1], file=sys.stderr, flush=True)
    return lines
