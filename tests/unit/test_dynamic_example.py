"""The examples run as a user runs them: a fresh process, the command from their docstring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dynamic_trainer_example_trains_and_exports_a_plan(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "examples" / "dynamic_trainer.py"), "--out", str(tmp_path), "--steps", "3"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 0", "step 2"]  # re-scored every 2 steps
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["settings"]["reallocations"] == 2
    assert 0 < plan["budget"]["used"] <= 60_000
    assert sum(m["rank"] > 0 for m in plan["modules"]) >= 1
