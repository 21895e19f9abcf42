"""`torchrun --standalone --nproc-per-node 2 -m heterolora.cli plan ...` writes the plan the same
command writes without torchrun (real torchrun, two gloo ranks, MiniLM): same ranks, scores
within 1e-5 relative, the same settings but `world_size`; rank 0 alone writes and prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from heterolora.plans import Plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["plan", "--budget-params", "20000", "--num-batches", "4"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "WORLD_SIZE", "RANK")}
    out = subprocess.run(cmd, env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _comparable(plan: Plan) -> dict:
    seen = plan.fingerprint()
    seen["settings"].pop("world_size")
    seen["modules"] = [m | {"score": None} for m in seen["modules"]]
    return seen


def test_torchrun_plan_equals_the_single_process_plan(tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    launched = _run([*torchrun, "-m", "heterolora.cli", *ARGS, "--out", str(tmp_path / "two.json")])
    _run([sys.executable, "-m", "heterolora.cli", *ARGS, "--out", str(tmp_path / "one.json")])
    two, one = Plan.load(tmp_path / "two.json"), Plan.load(tmp_path / "one.json")
    assert (two.settings["world_size"], one.settings["world_size"]) == (2, 1)
    assert two.ranks == one.ranks
    assert all(abs(a.score - b.score) <= 1e-5 * abs(b.score) for a, b in zip(two.modules, one.modules, strict=True))
    assert _comparable(two) == _comparable(one)
    assert launched.stdout.count("planned in") == 0 and launched.stderr.count("planned in") == 1  # rank 0 only
    assert two.timings["torch_threads"] == 1  # two local ranks share the CPUs (torchrun caps OMP threads too)
