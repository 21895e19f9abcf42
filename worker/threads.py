"""Torch threads per worker process: each pool process plans with max(1, CPUs // concurrency)
intra-op threads (heterolora/threads.py), so `-c 2` on two CPUs does not run four spinning threads.
Import-light: worker.app imports it so that OpenMP waits passively in every worker process."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_init, worker_process_init

from heterolora.threads import SHARERS_ENV, apply_threads, passive_wait

passive_wait()  # before worker.tasks imports torch (this module is imported by worker.app first)


@worker_init.connect
def _share_cpus(sender: Any = None, **_: Any) -> None:
    """The main worker process, before it forks its pool: the pool's processes share the CPUs."""
    concurrency = getattr(sender, "concurrency", None)
    if not isinstance(concurrency, int) or concurrency < 1:  # "auto": Celery resolves it to the CPU count
        concurrency = os.cpu_count() or 1
    os.environ.setdefault(SHARERS_ENV, str(concurrency))


@worker_process_init.connect
def _fit_threads(**_: Any) -> None:
    apply_threads()
