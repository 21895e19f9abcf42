"""Quality benchmark pieces that need no model: batching, arm specs, merging, the report schema."""

from __future__ import annotations

import pytest

from benchmarks.quality.arms import ArmSpec, arm_names, family_of, kind_of
from benchmarks.quality.data import bucketed_order, holdout_split
from benchmarks.quality.report import build_report, markdown, rank_by_type
from benchmarks.quality.train import f1_pos


def _run(arm: str, seed: int, acc: list[float], params: int = 82944) -> dict:
    return {
        "task": "mrpc", "arm": arm, "name": arm.split("__")[0], "kind": kind_of(arm), "seed": seed,
        "split": "validation", "lora_params": params, "head_params": 770, "plan_seconds": 1.0,
        "accuracy": acc, "f1": [a + 10 for a in acc], "train_seconds": 100.0,
        "settings": {"epochs": len(acc), "batch_size": 32, "lr": 1e-3, "max_length": 128},
        "sizes": {"train": 3668, "eval": 408}, "command": "python -m benchmarks.quality",
    }  # fmt: skip


def test_bucketed_order_covers_every_example_once_and_cuts_padding() -> None:
    lengths = [(i * 37) % 100 + 5 for i in range(1000)]
    batches = bucketed_order(lengths, 32, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1  # random batches pad to about 1.6x here
    assert bucketed_order(lengths, 32, seed=3) == batches
    assert bucketed_order(lengths, 32, seed=4) != batches


def test_holdout_split_is_disjoint_and_seeded() -> None:
    rows = [{"text": str(i), "label": i % 2} for i in range(300)]
    fit, held = holdout_split(rows)
    assert (len(fit), len(held)) == (200, 100)
    assert {r["text"] for r in fit}.isdisjoint(r["text"] for r in held)
    assert holdout_split(rows)[1] == held


def test_f1_of_the_positive_label() -> None:
    assert f1_pos([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert f1_pos([0, 0], [1, 0]) == 0.0


def test_arm_spec_overrides_and_kinds() -> None:
    spec = ArmSpec.parse("heterolora_rank_energy:normalize=layer/rank_set=1+2+4")
    assert spec.config_options() == {"normalize": "layer", "rank_set": [1, 2, 4]}
    assert spec.label == "heterolora_rank_energy__normalize-layer__rank_set-1+2+4"
    assert [kind_of(n) for n in ("uniform_all", "heterolora_snip", "random", "eva")] == [
        "baseline", "heterolora", "control", "peer"
    ]  # fmt: skip
    # (a)-(f): 11, (g) heterolora_shortcuts, (h) dynamic; round 3: the default plan, two init arms, LoRA-GA,
    # and (h) at rank 4, dynamic_wide; round 4: uniform_recipe and uniform_init
    assert len(arm_names()) == 20
    assert [kind_of(n) for n in ("heterolora_shortcuts", "dynamic")] == ["shortcut", "dynamic"]
    assert [kind_of(n) for n in ("heterolora", "heterolora_init", "uniform_all_init", "peft_lora_ga")] == [
        "heterolora", "init", "init", "peer"
    ]  # fmt: skip
    names = ("uniform_qv_r8", "uniform_recipe", "random", "heterolora_shortcuts", "uniform_init", "peft_lora_ga", "eva")
    families = [family_of(n) for n in names]
    assert families == ["adamw", "recipe_uniform", "recipe_plan", "recipe_plan", "init", "lora_ga", "eva"]
    with pytest.raises(ValueError, match="unknown arm"):
        ArmSpec.parse("lora_everywhere")


def test_report_schema_last_and_best_epoch() -> None:
    runs = [
        _run("uniform_qv_r8", 0, [70.0, 72.0], params=73728),
        _run("uniform_all", 0, [75.0, 74.0]),
        _run("uniform_all", 1, [73.0, 76.0]),
        _run("random", 0, [71.0, 71.5]),
    ]
    report = build_report("mrpc", runs, "python -m benchmarks.quality")
    assert set(report) >= {"task", "command", "baseline", "epochs_reported", "units", "arms"}
    assert (report["baseline"], report["epochs_reported"], report["units"]) == ("uniform_all", "last", "percent")
    arms = {a["name"]: a for a in report["arms"]}
    assert [a["name"] for a in report["arms"]] == ["uniform_qv_r8", "uniform_all", "random"]
    assert arms["uniform_all"]["accuracy"] == [74.0, 76.0]
    assert arms["uniform_all"]["accuracy_best"] == [75.0, 76.0]
    assert arms["uniform_all"]["best_epoch"] == [1, 2]
    assert arms["uniform_qv_r8"]["lora_params"] == 73728
    table = markdown(report)
    assert "| uniform_all | baseline | 0.001 | 82944 | 770 | 2 | 75.00 ± 1.41 | 74.00 ± 1.41 |" in table
    row = "| random | control | 0.001 | 82944 | 770 | 1 | 71.50 ± 0.00 | 71.00 ± 0.00 | 71.50 ± 0.00 | 81.50 ± 0.00 "
    assert row + "| -3.50 |" in table
    # paired with uniform_all on seed 0 only (74.0): 71.5 - 74.0; one pair: no interval, Wilcoxon p = 1
    assert arms["random"]["paired_delta"] == {"mean": -2.5, "sd": 0.0, "wins": 0, "n": 1}
    assert (arms["random"]["paired_ci95"], arms["random"]["wilcoxon_p"], arms["random"]["wins"]) == (None, 1.0, [0, 1])
    assert "| -3.50 | -2.50 ± 0.00 | 1 (1) | 0/1 | – |" in table
    assert arms["uniform_qv_r8"]["paired_delta"] == {"mean": -2.0, "sd": 0.0, "wins": 0, "n": 1}


def test_rank_by_type_sums_over_layers() -> None:
    ranks = {
        "bert.encoder.layer.0.attention.self.query": 2,
        "bert.encoder.layer.1.attention.self.query": 1,
        "bert.encoder.layer.0.attention.output.dense": 4,
        "bert.encoder.layer.5.intermediate.dense": 8,
        "bert.encoder.layer.5.output.dense": 2,
    }
    assert rank_by_type(ranks) == {"q": 3, "k": 0, "v": 0, "o": 4, "up": 8, "down": 2}


def test_markdown_lists_the_commands_that_produced_the_runs() -> None:
    runs = [_run("uniform_all", 0, [75.0]), _run("random", 0, [74.0])]
    merged = markdown(build_report("mrpc", runs, "python -m benchmarks.quality --merge-only"))
    assert "Command: `python -m benchmarks.quality --merge-only`" in merged
    assert "Runs:\n\n- `python -m benchmarks.quality`\n" in merged
    assert "Runs:" not in markdown(build_report("mrpc", runs, "python -m benchmarks.quality"))


def test_round3_statistics_epochs_and_holm() -> None:
    """Ten paired seeds: the arm is ahead by 1, 2, ..., 10 tenths on seeds 0-9 (all wins); a second
    arm is behind on seed 0 only. Per-arm CI, exact Wilcoxon, Holm across the two arms, epoch 1."""
    base = [_run("uniform_all", s, [70.0, 78.0, 80.0]) for s in range(10)]
    ahead = [_run("heterolora", s, [80.5, 80.0, 80.0 + (s + 1) / 10]) for s in range(10)]
    mixed = [_run("random", s, [60.0, 70.0, 79.0 if s == 0 else 80.5]) for s in range(10)]
    report = build_report("mrpc", base + ahead + mixed, "python -m benchmarks.quality")
    arms = {a["name"]: a for a in report["arms"]}
    hetero, rand = arms["heterolora"], arms["random"]
    assert report["baseline_final_mean"] == 80.0
    # diffs 0.1..1.0: mean 0.55, sd 0.30277; half-width 2.262157 * 0.30277 / sqrt(10) = 0.21659
    assert hetero["paired_ci95"] == pytest.approx([0.333, 0.767], abs=1e-3)
    assert hetero["wilcoxon_p"] == pytest.approx(2 / 1024, abs=1e-5) and hetero["wins"] == [10, 10]
    # random: diffs -1 (rank 10) and nine +0.5 (tied, mid-rank 5 each): W+ = 45 of 55. W+ = 5 k + 10 b
    # (k of the nine positive, b: the -1 flipped); W+ >= 45 for (k, b) = (9, 0), (9, 1), (8, 1), (7, 1):
    # 1 + 1 + 9 + 36 = 47 of 1024 patterns -> p = 2 * 47 / 1024
    assert rand["wilcoxon_p"] == pytest.approx(94 / 1024, abs=1e-5) and rand["wins"] == [9, 10]
    # Holm over two arms: the smaller p doubled, the larger times one (and never below the smaller's)
    assert hetero["wilcoxon_p_holm"] == pytest.approx(4 / 1024, abs=1e-5)
    assert rand["wilcoxon_p_holm"] == pytest.approx(94 / 1024, abs=1e-5)
    assert hetero["accuracy_epoch1"] == [80.5] * 10 and hetero["accuracy_by_epoch"][0] == 80.5
    assert hetero["epoch1_vs_baseline_final"]["mean"] == 0.5 and hetero["epoch1_vs_baseline_final"]["wins"] == 10
    assert (hetero["epoch_reaching_baseline"], rand["epoch_reaching_baseline"]) == (1, 3)
    assert "| heterolora | heterolora | 0.001 |" in markdown(report) and "| 10/10 | 1 |" in markdown(report)
    assert report["lr_pick"] is None  # a validation report picks nothing


def test_lr_pick_per_family_on_the_holdout() -> None:
    def held(arm: str, seed: int, lr: float, acc: float) -> dict:
        run = _run(arm, seed, [acc]) | {"split": "train-heldout", "arm": f"{arm}__lr-{lr:g}", "lr": lr}
        return run | {"family": family_of(arm)}

    rates = ((3e-4, 70.0), (1e-3, 74.0), (3e-3, 75.5))
    runs = [held("uniform_all", s, lr, acc + s) for s in range(3) for lr, acc in rates]
    runs += [held("heterolora", s, lr, 72.0) for s in range(3) for lr in (1e-3, 3e-3)]  # a tie
    pick = build_report("mrpc", runs, "python -m benchmarks.quality --sweep-lr 3e-4,1e-3,3e-3")["lr_pick"]
    assert pick["adamw"] == {
        "lr": 3e-3,
        "mean_accuracy": {"0.0003": 71.0, "0.001": 75.0, "0.003": 76.5},
        "runs": {"0.0003": 3, "0.001": 3, "0.003": 3},
    }
    assert pick["recipe_plan"]["lr"] == 1e-3  # the tie goes to the smaller rate


def test_rates_per_family_do_not_count_as_a_different_schedule() -> None:
    runs = [_run("uniform_all", 0, [75.0]), _run("random", 0, [74.0])]
    runs[1]["settings"] = runs[1]["settings"] | {"lr": 3e-3}
    assert build_report("mrpc", runs, "x")["settings_vary"] is False
    runs[1]["settings"] = runs[1]["settings"] | {"epochs": 3}
    assert build_report("mrpc", runs, "x")["settings_vary"] is True


def test_a_run_file_from_another_schedule_is_refused_not_merged(tmp_path) -> None:
    """Round 2's run files (mean head, lr 3e-3) share names with round 3's final runs: resuming must
    stop on them instead of counting them as done."""
    import json
    from dataclasses import asdict, replace

    from benchmarks.quality.arms import FAMILY_RECIPE
    from benchmarks.quality.runner import StaleRunFile, pending_jobs
    from benchmarks.quality.train import Settings

    (tmp_path / "mrpc").mkdir()
    now, adamw = Settings(), FAMILY_RECIPE["adamw"]
    for seed, settings in ((0, replace(now, lr=adamw.lr, ratio=adamw.ratio)), (1, replace(now, lr=3e-3, head="mean"))):
        (tmp_path / "mrpc" / f"uniform_all-s{seed}.json").write_text(json.dumps({"settings": asdict(settings)}))
    assert pending_jobs(["mrpc"], ["uniform_all"], [0, 2], tmp_path, False, [None], now) == [
        ("mrpc", "uniform_all", 2, None)
    ]  # seed 0 was made under this schedule (the adamw family's rate and ratio): done
    with pytest.raises(StaleRunFile, match=r"head 'mean' \(wanted 'shipped'\)"):
        pending_jobs(["mrpc"], ["uniform_all"], [1], tmp_path, False, [None], now)
    assert pending_jobs(["mrpc"], ["uniform_all"], [1], tmp_path, True, [None], now) == [
        ("mrpc", "uniform_all", 1, None)
    ]


def _run4(arm: str, seed: int, correct_last: int, correct_ep1: int = 300, split: str = "validation") -> dict:
    """A round-4 run on 400 examples (gold alternating 1, 0) whose first `correct_*` predictions are right."""
    gold = [1, 0] * 200

    def preds(k: int) -> list[int]:
        return [g if i < k else 1 - g for i, g in enumerate(gold)]

    acc = [100 * correct_ep1 / 400, 100 * correct_last / 400]
    training = {"learning_rate": 1e-3, "lora_plus_ratio": 1.0, "alpha_mode": "constant", "init": "zero"}
    run = _run(arm, seed, acc) | {"gold": gold, "predictions": [preds(correct_ep1), preds(correct_last)]}
    return run | {"training": training, "split": split, "family": family_of(arm.split("__")[0])}


def test_round4_report_compares_candidates_with_arms_1_and_2() -> None:
    """heterolora is 8 examples (2 points) ahead of uniform_all on all five seeds, heterolora_init 1
    example ahead on 3 of 5; uniform_recipe ties uniform_all. Holm runs over the two candidates only."""
    runs = [_run4("uniform_all", s, 320) for s in range(5)] + [_run4("uniform_recipe", s, 320) for s in range(5)]
    runs += [_run4("heterolora", s, 328) for s in range(5)]
    runs += [_run4("heterolora_init", s, 321 if s < 3 else 319) for s in range(5)]
    report = build_report("mrpc", runs, "python -m benchmarks.quality")
    arms = {a["name"]: a for a in report["arms"]}
    assert report["default_arm"] == "heterolora" and report["holm_family"] == "candidates"
    assert arms["heterolora"]["training"]["lora_plus_ratio"] == 1.0
    hetero = arms["heterolora"]["versus"]["uniform_all"]
    assert hetero["mean"] == 2.0 and hetero["ci95_t"] == [2.0, 2.0] and hetero["wins"] == 5
    # the seed interval has no width (every seed +2); the bootstrap sees the 8 examples' sampling error
    low, high = hetero["ci95_bootstrap"]
    assert 0 < low < 2.0 < high < 4.0 and hetero["ci95_rule"] == hetero["ci95_bootstrap"]
    # Holm over the two candidates: heterolora p = 2/32, doubled; heterolora_init's p larger, kept
    init = arms["heterolora_init"]["versus"]["uniform_all"]
    assert hetero["wilcoxon_p"] == pytest.approx(0.0625) and hetero["wilcoxon_p_holm"] == pytest.approx(0.125)
    assert init["wilcoxon_p_holm"] == pytest.approx(max(0.125, init["wilcoxon_p"]))
    assert init["ci95_rule"][0] < 0 < init["ci95_rule"][1]
    assert arms["heterolora"]["versus"]["uniform_recipe"]["mean"] == 2.0
    assert hetero["epoch1"]["mean"] == 0.0 and hetero["epoch1"]["ci95_bootstrap"] == [0.0, 0.0]
    # arms outside the family keep their unadjusted p only
    assert arms["uniform_recipe"]["wilcoxon_p_holm"] is None
    assert arms["heterolora"]["wilcoxon_p_holm"] == pytest.approx(0.125)


def test_sweep_pick_prunes_after_seed_0_and_breaks_ties_by_b_rate() -> None:
    def point(seed: int, lr: float, ratio: float, correct: int) -> dict:
        run = _run4("heterolora", seed, correct, split="train-heldout")
        run["arm"] = f"heterolora__lr-{lr:g}__ratio-{ratio:g}"
        return run | {"training": run["training"] | {"learning_rate": lr, "lora_plus_ratio": ratio}}

    grid = {(1e-3, 1): 300, (2.5e-4, 4): 310, (5e-4, 4): 320, (1e-3, 4): 290, (2.5e-4, 16): 320, (5e-4, 16): 200}
    runs = [point(0, lr, r, c) for (lr, r), c in grid.items()]
    # seed 1 for the top 3: (5e-4, 4) and (2.5e-4, 16) tie at 320 -> the smaller B rate (2e-3 < 4e-3) first
    pick = build_report("mrpc", runs, "x")["sweep_pick"]["recipe_plan"]
    assert pick["seed1_for"] == ["heterolora__lr-0.0005__ratio-4", "heterolora__lr-0.00025__ratio-16",
                                 "heterolora__lr-0.00025__ratio-4"]  # fmt: skip
    assert pick["pick"] is None and pick["seeds"] == 1  # nothing is picked on one seed
    runs += [point(1, 5e-4, 4, 316), point(1, 2.5e-4, 16, 316), point(1, 2.5e-4, 4, 330)]
    pick = build_report("mrpc", runs, "x")["sweep_pick"]["recipe_plan"]
    assert pick["mean_accuracy"] == {"heterolora__lr-0.00025__ratio-4": 80.0, "heterolora__lr-0.0005__ratio-4": 79.5,
                                     "heterolora__lr-0.00025__ratio-16": 79.5}  # fmt: skip
    assert pick["pick"] == "heterolora__lr-0.00025__ratio-4" and pick["pick_training"]["lora_plus_ratio"] == 4
    table = markdown(build_report("mrpc", runs, "x"))
    assert "| recipe_plan | heterolora__lr-0.0005__ratio-4 80.00, heterolora__lr-0.00025__ratio-16 80.00, " in table
    assert "| heterolora__lr-0.00025__ratio-4 (80.00) |" in table


def test_sst2_rows_are_single_sentences(tmp_path) -> None:
    from transformers import AutoTokenizer

    from benchmarks.quality.data import encode, load_rows
    from heterolora.loading import embedded_model_path

    (tmp_path / "sst2").mkdir()
    rows = "idx\tlabel\tsentence\n0\t1\tit 's a charming journey . \n1\t0\t\" flat and dull \n"
    (tmp_path / "sst2" / "train.tsv").write_text(rows)
    loaded = load_rows(tmp_path, "sst2", "train")
    assert loaded == [
        {"text": "it 's a charming journey . ", "text_pair": None, "label": 1},
        {"text": '" flat and dull ', "text_pair": None, "label": 0},
    ]
    enc = encode(loaded, AutoTokenizer.from_pretrained(embedded_model_path()), 32)
    assert enc.labels == [1, 0] and all(set(t) == {0} for t in enc.token_type_ids)  # one segment
    assert enc.input_ids[1][:3] == [101, 1000, 4257]  # [CLS] " flat
