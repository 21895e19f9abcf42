"""One job over several processes (`HETEROLORA_WORKER_PROCS` > 1): torch's elastic launcher
(`torch.distributed.launcher.elastic_launch`, what `torchrun --standalone` runs) starts the ranks on
this host; they plan together through heterolora.distributed (gloo on CPU, NCCL with one GPU per
rank) and rank 0 hands the plan back.

- The ranks are fresh Python processes (`python -m service.jobs.ranks FOLDER`; a Celery pool
  process may not fork children of its own): the request, rank 0's progress and its plan travel
  through files in a private temporary folder.
- Progress: rank 0 appends (fraction, phase) lines; the calling thread passes them to the job's
  progress callback, which may raise to cancel the job or end it at its soft time limit. The ranks
  are then killed and the exception goes on (nothing is stored).
- A rank that dies ends the job with `distributed_failed`, naming the rank and its exit code; the
  plan exists only when every rank finished, so no half plan is ever stored.
- Bad input fails on every rank alike and comes back as its own error (code and field).
- The launcher runs in a helper thread, so it installs no signal handlers over Celery's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from heterolora.distributed import DistributedError
from heterolora.errors import HeteroLoraError
from heterolora.plans import Plan
from heterolora.proxies.context import Progress
from heterolora.schemas import AllocateRequest

POLL_S = 0.2


def _watch_parent() -> None:
    """End this rank when the launcher that started it goes (a worker killed at its hard limit)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def rank_main(folder: Path, device: str | None, dtype: str | None) -> None:
    """One rank: plan the folder's request with the others; rank 0 writes the outcome."""
    _watch_parent()
    from heterolora.caches import ModelCache
    from heterolora.threads import apply_threads
    from service.jobs.run import run_request

    apply_threads()  # LOCAL_WORLD_SIZE ranks (times the worker's concurrency) share the CPUs
    rank = int(os.environ["RANK"])
    (folder / f"pid-{rank}").write_text(str(os.getpid()))
    request = AllocateRequest.model_validate_json((folder / "request.json").read_text())
    progress = None
    if rank == 0:
        lines = (folder / "progress").open("a", buffering=1)
        progress = lambda f, phase: lines.write(json.dumps([f, phase]) + "\n")  # noqa: E731
    try:
        plan = run_request(request, cache=ModelCache(size=0), device=device, dtype=dtype, progress=progress)
    except HeteroLoraError as exc:  # the same on every rank (the same input): the job's own error
        outcome: dict[str, Any] = {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}
    else:
        outcome = {"plan": plan.model_dump(mode="json")}
        if rank == 0 and plan.init_data is not None:
            (folder / "init.bin").write_bytes(plan.init_data)
    if rank == 0:  # written last and renamed: the plan exists only once it is whole
        (folder / "outcome.tmp").write_text(json.dumps(outcome))
        (folder / "outcome.tmp").rename(folder / "outcome.json")


def run_on_ranks(
    request: AllocateRequest,
    procs: int,
    *,
    device: str | None = None,
    dtype: str | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Plan `request` on `procs` local ranks; `progress` is called in this thread and may raise."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=procs,
        run_id=f"heterolora-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,  # a dead rank fails the job; Celery's re-delivery rules decide what is next
        monitor_interval=0.2,
        start_method="spawn",
    )
    with tempfile.TemporaryDirectory(prefix="heterolora-ranks-") as name:
        folder = Path(name)
        (folder / "request.json").write_text(request.model_dump_json())
        (folder / "progress").touch()
        args = ["-m", "service.jobs.ranks", name, device or "", dtype or ""]
        outcome: dict[str, Any] = {}

        def launch() -> None:
            try:
                elastic_launch(config, sys.executable)(*args)
            except ChildFailedError as exc:
                outcome["failed"] = exc
            except BaseException as exc:
                outcome["error"] = exc

        launcher = threading.Thread(target=launch, name="heterolora-ranks", daemon=True)
        launcher.start()
        with (folder / "progress").open() as lines:
            try:
                while launcher.is_alive():
                    launcher.join(timeout=POLL_S)
                    _pump(lines, progress)
            except BaseException:
                _kill(folder)  # cancelled, or past the time limit: stop every rank, store nothing
                launcher.join(timeout=30)
                raise
        return _result(outcome, folder)


def _pump(lines: Any, progress: Progress | None) -> None:
    for line in lines.readlines():
        if progress is not None and line.endswith("\n"):
            progress(*json.loads(line))


def _kill(folder: Path) -> None:
    for pid_file in folder.glob("pid-*"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _result(outcome: dict[str, Any], folder: Path) -> Plan:
    if "failed" in outcome:
        failures = outcome["failed"].failures
        first = min(failures)
        raise DistributedError(
            f"rank {first} of the job's processes failed (exit code {failures[first].exitcode}); "
            "the job ended without a plan"
        )
    if "error" in outcome:
        raise DistributedError(f"the job's processes could not run: {str(outcome['error']).splitlines()[0]}")
    main = json.loads((folder / "outcome.json").read_text())
    if "error" in main:
        error = main["error"]
        failure = HeteroLoraError(error["message"], field=error["field"])
        failure.code = error["code"]
        raise failure
    plan = Plan.model_validate(main["plan"])
    init = folder / "init.bin"
    return plan.attach_init_data(init.read_bytes()) if init.exists() else plan


if __name__ == "__main__":
    rank_main(Path(sys.argv[1]), sys.argv[2] or None, sys.argv[3] or None)
