"""Torch threads that fit the CPUs a process may use (heterolora/threads.py): the rule, the cgroup
quota, CPU affinity in a real process, and the CLI recording the threads it planned on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heterolora.plans import Plan
from heterolora.threads import ThreadSettingError, cgroup_quota, fit_threads, usable_cpus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "cpus", "expected"),
    [
        ({}, 8, 8),
        ({"HETEROLORA_CPU_SHARERS": "2"}, 8, 4),
        ({"HETEROLORA_CPU_SHARERS": "2", "LOCAL_WORLD_SIZE": "2"}, 8, 2),
        ({"HETEROLORA_CPU_SHARERS": "4"}, 2, 1),  # never below one
        ({"LOCAL_WORLD_SIZE": "3"}, 8, 2),
        ({"OMP_NUM_THREADS": "1"}, 8, 1),  # a launcher's cap (torchrun sets 1) is kept
        ({"HETEROLORA_TORCH_THREADS": "3", "HETEROLORA_CPU_SHARERS": "4"}, 8, 3),  # the override wins
        ({"HETEROLORA_TORCH_THREADS": "torch"}, 8, None),
    ],
)
def test_threads_are_cpus_over_sharers(env: dict[str, str], cpus: int, expected: int | None) -> None:
    assert fit_threads(env, cpus=cpus) == expected


@pytest.mark.parametrize(
    "env",
    [{"HETEROLORA_TORCH_THREADS": "0"}, {"HETEROLORA_TORCH_THREADS": "lots"}, {"HETEROLORA_CPU_SHARERS": "5000"}],
)
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ThreadSettingError, match=next(iter(env))):
        fit_threads(env, cpus=4)


def test_cgroup_quota_v2_and_v1(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None  # nothing mounted: no limit
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) is None  # v1, unlimited
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    assert cgroup_quota(tmp_path) == 2.5
    own = Path("/proc/self/cgroup").read_text()
    if "0::/\n" in own or own.startswith("0::/\n"):  # a v2 line for the root group: cpu.max at the root
        (tmp_path / "cpu.max").write_text("150000 100000\n")
        assert cgroup_quota(tmp_path) == 1.5  # the tighter of the two


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HETEROLORA_TORCH_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity (Linux)")
def test_a_process_pinned_to_one_cpu_runs_one_thread() -> None:
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from heterolora.threads import apply_threads\n"
        "import torch; print(apply_threads(), torch.get_num_threads(), torch.get_num_interop_threads())"
    )
    assert _python(code) == "1 1 1"


def test_interop_threads_set_once_does_not_fail() -> None:
    code = (
        "import torch; torch.set_num_interop_threads(1)\n"
        "from heterolora.threads import apply_threads; print(apply_threads(), torch.get_num_interop_threads())"
    )
    assert _python(code, HETEROLORA_TORCH_THREADS="2") == "2 1"


@pytest.mark.slow
def test_cli_plans_on_its_share_and_records_it(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    cmd = "from heterolora.cli import main; main()"
    args = ["plan", "--num-batches", "1", "--batch-size", "4", "--out", str(out)]
    _python(f"import sys; sys.argv = ['heterolora', *{json.dumps(args)}]; {cmd}", HETEROLORA_CPU_SHARERS="2")
    assert Plan.load(out).timings["torch_threads"] == max(1, usable_cpus() // 2)
