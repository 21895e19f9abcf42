"""The round-4 hold-out sweep driver (benchmarks/quality/sweep.py): its grid is the protocol's, its
run names are the harness's, and seed 1 goes to the points the merged report names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.quality.sweep import GRID, command, grid, label, run_path, seed1_points
from benchmarks.quality.train import Settings, run_label


def test_grid_is_the_protocols() -> None:
    assert len(GRID["recipe_plan"]) == len(GRID["recipe_uniform"]) == 6 and len(GRID["adamw"]) == 4
    full = {(r, lr) for r in (1, 4, 16) for lr in (2.5e-4, 5e-4, 1e-3)}
    assert full - set(GRID["recipe_plan"]) == {(1, 2.5e-4), (1, 5e-4), (16, 1e-3)}  # slowest two, hottest
    point = ("heterolora", 4.0, 5e-4)
    assert label(point) == run_label("heterolora", Settings(lr=5e-4, ratio=4.0)) == "heterolora__lr-0.0005__ratio-4"
    assert command(point, 1)[3:] == ["--task", "mrpc", "--arms", "heterolora", "--seeds", "1", "--sweep-lr",
                                     "0.0005", "--ratio", "4", "--workers", "1"]  # fmt: skip


def test_seed_1_follows_the_report_and_init_follows_the_pick(tmp_path: Path) -> None:
    points = grid("recipe_plan")
    for p in points:
        run_path(p, 0, tmp_path).parent.mkdir(parents=True, exist_ok=True)
        run_path(p, 0, tmp_path).write_text("{}")
    top = [label(p) for p in points[:3]]
    pick = {"lora_plus_ratio": 4.0, "learning_rate": 5e-4}
    report = {"sweep_pick": {"recipe_plan": {"seed1_for": top, "pick_training": pick}}}
    (tmp_path / "quality-sweep-mrpc.json").write_text(json.dumps(report))
    assert seed1_points("recipe_plan", tmp_path) == points[:3]
    assert [label(p) for p in grid("init", tmp_path)] == [
        f"heterolora_init__init_step-{s}__head_warmup_steps-{w}__lr-0.0005__ratio-4"
        for s in ("line_search", "lora_one")
        for w in (0, 64)
    ]
    report["sweep_pick"]["recipe_plan"]["seed1_for"] = top[:1]  # a report that disagrees is refused
    (tmp_path / "quality-sweep-mrpc.json").write_text(json.dumps(report))
    with pytest.raises(SystemExit, match="not the top 3"):
        seed1_points("recipe_plan", tmp_path)
