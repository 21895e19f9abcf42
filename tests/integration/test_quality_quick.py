"""`python -m benchmarks.quality --quick` end to end: tiny MRPC subset, 1 epoch, two arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.quality.cli import quality

GLUE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue"


@pytest.mark.skipif(not (GLUE / "mrpc" / "train.tsv").is_file(), reason="GLUE copy not present")
def test_quick_benchmark_writes_json_table_and_plot(tmp_path: Path) -> None:
    args = ["--quick", "--task", "mrpc", "--workers", "1", "--head", "mean"]
    result = CliRunner().invoke(quality, [*args, "--data-dir", str(GLUE), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "quality-mrpc.json").read_text())
    assert report["task"] == "mrpc" and report["units"] == "percent" and report["epochs_reported"] == "last"
    assert report["baseline"] == "uniform_all"
    assert report["command"].startswith("python -m benchmarks.quality --task mrpc --data-dir ")
    assert "--quick" in report["command"].split()
    arms = {a["name"]: a for a in report["arms"]}
    assert len(arms) == 2 and arms["uniform_all"]["kind"] == "baseline"
    hetero = next(a for a in report["arms"] if a["kind"] == "heterolora")
    assert arms["uniform_all"]["lora_params"] == 82944  # rank 2 on all 36 linear sites of MiniLM
    assert 82944 - 1920 * 2 < hetero["lora_params"] <= 82944  # filled to within one step
    assert hetero["head_params"] == arms["uniform_all"]["head_params"] == 384 * 2 + 2  # mean pooling + classifier
    for arm in report["arms"]:
        assert len(arm["accuracy"]) == len(arm["f1"]) == 1
        assert 0.0 <= arm["accuracy"][0] <= 100.0 and arm["plan_seconds"] >= 0 and arm["train_seconds"] > 0
    assert (tmp_path / "quality-mrpc.png").stat().st_size > 1000
    table = (tmp_path / "quality-mrpc.md").read_text()
    assert "| uniform_all | baseline | 0.002 | 82944 | 770 | 1 |" in table  # the adamw family's hold-out pick


@pytest.mark.skipif(not (GLUE / "mrpc" / "train.tsv").is_file(), reason="GLUE copy not present")
def test_quick_shortcut_and_dynamic_arms(tmp_path: Path) -> None:
    args = ["--quick", "--task", "mrpc", "--workers", "1", "--arms", "heterolora_shortcuts,dynamic"]
    result = CliRunner().invoke(quality, [*args, "--data-dir", str(GLUE), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    arms = {a["name"]: a for a in json.loads((tmp_path / "quality-mrpc.json").read_text())["arms"]}
    assert arms["heterolora_shortcuts"]["kind"] == "shortcut" and arms["dynamic"]["kind"] == "dynamic"
    assert 82944 - 1920 * 2 < arms["heterolora_shortcuts"]["lora_params"] <= 82944  # LoRA + shortcut factors
    assert arms["dynamic"]["lora_params"] == 82944  # the most active at once
    dynamic = json.loads(next((tmp_path / "quality-runs").rglob("dynamic-s0.json")).read_text())
    steps = [r["step"] for r in dynamic["reallocations"]]
    assert steps[0] == 0 and steps == sorted(set(steps)) and len(steps) >= 2  # step 0, then every 0.2 epoch
    assert all(0 < r["active_params"] <= 82944 for r in dynamic["reallocations"])
    assert dynamic["reallocations"][0]["switched"] == dynamic["reallocations"][0]["active"]  # all new at step 0
    run = json.loads(next((tmp_path / "quality-runs").rglob("heterolora_shortcuts-s0.json")).read_text())
    assert any(".shortcuts." in name for name in run["ranks"])  # e.g. encoder.layer.3.shortcuts.residual2


@pytest.mark.skipif(not (GLUE / "mrpc" / "train.tsv").is_file(), reason="GLUE copy not present")
def test_quick_shipped_head_lora_ga_and_explicit_rate(tmp_path: Path) -> None:
    """The default head is what apply_plan trains on MiniLM as loaded: the classifier over the mean
    pooling the checkpoint declares."""
    args = ["--quick", "--task", "mrpc", "--workers", "1", "--arms", "uniform_all,peft_lora_ga", "--lr", "1e-3"]
    result = CliRunner().invoke(quality, [*args, "--data-dir", str(GLUE), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "quality-mrpc.json").read_text())
    arms = {a["name"]: a for a in report["arms"]}
    assert set(arms) == {"uniform_all__lr-0.001", "peft_lora_ga__lr-0.001"}  # an explicit rate names the run
    lora_ga = arms["peft_lora_ga__lr-0.001"]
    assert lora_ga["kind"] == "peer" and lora_ga["family"] == "lora_ga" and lora_ga["lr"] == 1e-3
    assert lora_ga["lora_params"] == arms["uniform_all__lr-0.001"]["lora_params"] == 82944  # uniform r=2
    assert lora_ga["head_params"] == 384 * 2 + 2  # the classifier only (no BERT pooler)
    assert lora_ga["rank_by_type"] == {t: 12 for t in ("q", "k", "v", "o", "up", "down")}
    run = json.loads((tmp_path / "quality-runs" / "mrpc" / "peft_lora_ga__lr-0.001-s0.json").read_text())
    assert run["settings"]["head"] == "shipped" and run["settings"]["device"] in ("cpu", "cuda")


@pytest.mark.skipif(not (GLUE / "mrpc" / "train.tsv").is_file(), reason="GLUE copy not present")
def test_quick_round4_arms_keep_predictions_and_training(tmp_path: Path) -> None:
    """Round 4: the recipe arms at a LoRA+ ratio, with rsLoRA, on the train hold-out; each run file
    keeps its per-example predictions (the bootstrap's input) and the recipe it trained with."""
    args = ["--quick", "--task", "mrpc", "--workers", "1", "--arms", "uniform_all,uniform_recipe,uniform_init"]
    args += ["--ratio", "4", "--sweep-lr", "5e-4"]
    result = CliRunner().invoke(quality, [*args, "--data-dir", str(GLUE), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    runs = tmp_path / "quality-sweep-runs" / "mrpc"
    run = json.loads((runs / "uniform_recipe__lr-0.0005__ratio-4-s0.json").read_text())
    assert run["split"] == "train-heldout" and run["lora_params"] == 82944
    assert run["training"] == {
        "learning_rate": 5e-4, "lora_plus_ratio": 4.0, "alpha_mode": "rslora", "init": "zero", "init_step": None,
        "head_warmup_steps": 0,
    }  # fmt: skip
    assert len(run["gold"]) == 32 and [len(p) for p in run["predictions"]] == [32]
    correct = sum(p == g for p, g in zip(run["predictions"][0], run["gold"], strict=True))
    assert run["accuracy"] == [round(100 * correct / 32, 4)]
    init = json.loads((runs / "uniform_init__lr-0.0005__ratio-4-s0.json").read_text())
    assert init["training"]["init"] == "gradient" and init["training"]["alpha_mode"] == "rslora"
    report = json.loads((tmp_path / "quality-sweep-mrpc.json").read_text())
    assert set(report["sweep_pick"]) == {"adamw", "recipe_uniform", "init"}


@pytest.mark.skipif(not (GLUE / "mrpc" / "train.tsv").is_file(), reason="GLUE copy not present")
def test_init_steps_rebuilds_the_plan_the_run_trained(tmp_path: Path) -> None:
    """`benchmarks.quality.init_steps` reports the step of the plan a run trained from: it prepares the
    model and scoring batches as the run does, so the rebuilt plan has the run's ranks to the site."""
    from benchmarks.quality.init_steps import rebuilt_plan, step_row
    from benchmarks.quality.runner import QUICK

    args = ["--quick", "--task", "mrpc", "--workers", "1", "--arms", "heterolora_init"]
    result = CliRunner().invoke(quality, [*args, "--data-dir", str(GLUE), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "quality-runs" / "mrpc" / "heterolora_init-s0.json").read_text())
    plan = rebuilt_plan("mrpc", "heterolora_init", 0, QUICK)
    assert plan.ranks == run["ranks"] and sum(plan.ranks.values()) > 0
    assert plan.training is not None and run["training"]["init_step"] == plan.training.init_step_rule == "line_search"
    step = step_row(0, plan)
    assert step == {"seed": 0, "init_step": plan.training.init_step, "rule": "line_search"}
    assert step["init_step"] >= 0
