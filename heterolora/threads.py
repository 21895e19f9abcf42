"""Torch threads that fit the CPUs this process may use.

torch starts one intra-op thread per CPU it sees, whoever else runs there. On a 2-CPU machine
with one other busy process, or with two worker processes or two ranks per node, those threads
spin on shared cores and a plan runs many times slower than on one thread (docs/performance.md,
Threads). So every entry point that plans sets

    threads = max(1, usable CPUs // processes sharing them)

- usable CPUs: the CPUs this process may run on (`os.sched_getaffinity`), capped by the cgroup's
  CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`);
- processes sharing them: `HETEROLORA_CPU_SHARERS` (a worker sets it to its concurrency) times
  `LOCAL_WORLD_SIZE` (ranks on this node under torchrun);
- `HETEROLORA_TORCH_THREADS` overrides it: a number, `auto` (the default), or `torch` to leave
  torch's own choice; `OMP_NUM_THREADS`, when set, caps the automatic count.

Import-light (no torch at import): `passive_wait()` must run before torch loads OpenMP.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

THREADS_ENV = "HETEROLORA_TORCH_THREADS"
SHARERS_ENV = "HETEROLORA_CPU_SHARERS"
MAX_THREADS = 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")


class ThreadSettingError(ValueError):
    """A thread setting in the environment that is not a number in range."""


def _bounded_int(name: str, value: str, low: int = 1, high: int = MAX_THREADS) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ThreadSettingError(f"{name} must be an integer from {low} to {high}, got {value!r}") from None
    if not low <= number <= high:
        raise ThreadSettingError(f"{name} must be an integer from {low} to {high}, got {number}")
    return number


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _own_cgroup_v2(root: Path) -> Path | None:
    """This process's cgroup v2 folder ("0::/path" in /proc/self/cgroup), if mounted at `root`."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return root / line[3:].lstrip("/")
    return None


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (e.g. 1.5), the tightest along the hierarchy; None if unlimited."""
    quotas: list[float] = []
    own = _own_cgroup_v2(root)
    folders = [own, *own.parents] if own is not None else []
    for folder in folders:
        if not folder.is_relative_to(root):
            break
        try:
            limit, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if limit != "max" and float(period) > 0:
            quotas.append(float(limit) / float(period))
    try:  # cgroup v1
        quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            quotas.append(quota / period)
    except (OSError, ValueError):
        pass
    return min(quotas) if quotas else None


def usable_cpus() -> int:
    """Affinity CPUs, capped by the cgroup quota (a fractional quota rounds up: 1.5 -> 2)."""
    cpus = affinity_cpus()
    quota = cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def sharers(env: dict[str, str] | os._Environ[str] | None = None) -> int:
    """Processes that share this process's CPUs: HETEROLORA_CPU_SHARERS × LOCAL_WORLD_SIZE."""
    env = os.environ if env is None else env
    share = _bounded_int(SHARERS_ENV, env.get(SHARERS_ENV, "1"))
    local = _bounded_int("LOCAL_WORLD_SIZE", env.get("LOCAL_WORLD_SIZE", "1"))
    return share * local


def fit_threads(env: dict[str, str] | os._Environ[str] | None = None, cpus: int | None = None) -> int | None:
    """The intra-op thread count for this process; None means leave torch's default."""
    env = os.environ if env is None else env
    setting = env.get(THREADS_ENV, "auto").strip().lower() or "auto"
    if setting == "torch":
        return None
    if setting != "auto":
        return _bounded_int(THREADS_ENV, setting)
    threads = max(1, (cpus or usable_cpus()) // sharers(env))
    cap = env.get("OMP_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        threads = min(threads, int(cap))
    return threads


def passive_wait() -> None:
    """OpenMP threads that sleep instead of spinning while they wait (`OMP_WAIT_POLICY=PASSIVE`),
    unless set already. OpenMP reads it once, when torch loads it: call this before `import torch`."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply_threads(env: dict[str, str] | os._Environ[str] | None = None) -> int:
    """Set torch's intra-op threads (and inter-op threads, which torch allows only once per
    process, before any parallel work) to `fit_threads()`; returns the intra-op count in use."""
    import torch

    threads = fit_threads(env)
    if threads is None:
        return torch.get_num_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        if torch.get_num_interop_threads() != threads:
            torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or inter-op work already ran in this process: keep it
        pass
    return torch.get_num_threads()
