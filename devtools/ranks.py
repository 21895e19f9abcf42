"""Real multi-process planning for the distributed tests and benchmark: `launch(world, job, folder)`
starts `world` Python processes with the environment torchrun gives its workers (WORLD_SIZE, RANK,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); each builds the job's tiny model and
batches (tests/conftest.py, seeded alike), plans with heterolora.engine.compute_plan over the gloo
process group, and writes what it got. Test tooling only.

    python -m devtools.ranks '<job json>' OUT_FOLDER     # one rank (launch() sets the environment)

A job: {"arch": "bert" | "llama", "task": "seq-cls" | "causal-lm", "batches": K, "configs": [AllocationConfig
options, ...]}, optionally "die": {"rank": r, "at": "scoring 2/"} (that rank exits there),
"vary_seed": true (each rank plans with seed = its rank: ranks that disagree) or "fsdp": true
(the model wrapped with FSDP2's `fully_shard` before planning).
Rank r writes r{r}-{i}.json (plan i) and, with an init, r{r}-{i}.safetensors; r{r}-stats.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DIED = 17  # the exit code of a rank told to die


@dataclass
class Outcome:
    returncode: int
    log: str


def free_port() -> int:
    from devtools.stack import free_port as port

    return port()


def launch(world: int, job: dict[str, Any], folder: Path, timeout: float = 300) -> list[Outcome]:
    """Run the job on `world` ranks; each rank's exit code and output, in rank order."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HETEROLORA_TORCH_THREADS")}
    base |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world)}
    base |= {"LOCAL_WORLD_SIZE": str(world), "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    procs = []
    for rank in range(world):
        env = base | {"RANK": str(rank), "LOCAL_RANK": str(rank)}
        log = (folder / f"r{rank}.log").open("wb")
        cmd = [sys.executable, "-m", "devtools.ranks", json.dumps(job), str(folder)]
        procs.append((subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + timeout
    outcomes = []
    for rank, (proc, log) in enumerate(procs):
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        outcomes.append(Outcome(proc.returncode, (folder / f"r{rank}.log").read_text(errors="replace")))
    return outcomes


def build(job: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The job's tiny model and scoring batches (the same on every rank and in the test process),
    or with "workload": a benchmarks.perf workload's (benchmarks/perf/distributed.py)."""
    if "workload" in job:
        from benchmarks.perf.workloads import Spec, load

        work = load(Spec(**job["workload"]))
        return work.model, work.build(work.spec.config())
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import random_batches, tiny_model

    task = job.get("task", "seq-cls")
    model = tiny_model(job["arch"], task=task)
    batches = random_batches(n=job["batches"], labels=None if task == "causal-lm" else 2)
    return model, batches


def shard_fully(model: Any) -> None:
    """FSDP2: each transformer layer, then the whole model, sharded over the ranks (CPU, gloo)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from heterolora.search_space import walk_sites

    mesh = init_device_mesh("cpu", (int(os.environ["WORLD_SIZE"]),))
    layers = {name.rsplit(".", 1)[0] for name, _ in model.named_modules() if name.endswith(".self_attn")}
    for name in sorted(layers):
        fully_shard(model.get_submodule(name), mesh=mesh)
    fully_shard(model, mesh=mesh)
    walk_sites(model)  # still finds every site


def main(job: dict[str, Any], folder: Path) -> None:
    from heterolora.threads import apply_threads, passive_wait

    passive_wait()  # as the CLI does, before torch loads OpenMP
    apply_threads()
    from heterolora.config import AllocationConfig
    from heterolora.distributed import from_env, release
    from heterolora.engine import compute_plan

    model, batches = build(job)
    group = from_env("cpu")  # None for a world of one: the single-process path
    if job.get("fsdp"):
        shard_fully(model)
    rank = group.rank if group is not None else 0
    die = job.get("die") or {}
    scored = set()  # the batch counts of this rank's scoring passes ("scoring i/n")

    def progress(fraction: float, phase: str) -> None:
        if phase.startswith("scoring ") and "/" in phase:
            scored.add(int(phase.split("/")[1].split()[0]))
        if die.get("rank") == rank and phase.startswith(die["at"]):
            os._exit(DIED)  # as a rank killed mid-way would: no clean-up, no message

    seconds = []
    for i, options in enumerate(job["configs"]):
        if job.get("vary_seed"):  # a rank that disagrees with the others
            options = options | {"seed": rank}
        config = AllocationConfig(task=job.get("task", "seq-cls"), **options)
        start = time.perf_counter()
        plan = compute_plan(model, batches, config, progress=progress, group=group)
        seconds.append(time.perf_counter() - start)
        plan.save(folder / f"r{rank}-{i}.json")
    stats = {"bytes_reduced": group.bytes_reduced if group else 0, "reductions": group.reductions if group else 0}
    stats |= {"scored_batches": sorted(scored), "plan_s": seconds}
    (folder / f"r{rank}-stats.json").write_text(json.dumps(stats))
    release()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), Path(sys.argv[2]))
