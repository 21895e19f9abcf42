"""Serving-stack compatibility without the stack: vLLM's documented rules (heterolora/serving.py),
`heterolora show --check vllm`, and a trained adapter whose adapter_config.json PEFT (and vLLM's
pattern rule) resolve to every planned rank and alpha."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import heterolora
from heterolora.apply import applied_ranks
from heterolora.cli import main
from heterolora.config import AllocationConfig
from heterolora.errors import ConfigError
from heterolora.loading import LoadedModel, load_model
from heterolora.plans import Plan
from heterolora.serving import VLLM_MAX_LORA_RANKS, check_adapter, check_plan, check_vllm


def peft(r: int = 8, pattern: dict[str, int] | None = None, **extra: object) -> dict[str, object]:
    return {"r": r, "lora_alpha": 2 * r, "rank_pattern": pattern or {}, **extra}


def test_vllm_rule_largest_rank_against_max_lora_rank() -> None:
    fits = check_vllm(peft(4, {"^a": 16, "^b": 2}))
    assert fits.ok and fits.max_rank == 16 and fits.needed_max_lora_rank == 16 and fits.max_lora_rank == 16
    # The default r is small, one pattern rank is over the cap: the pattern decides.
    over = check_vllm(peft(4, {"^a": 32}))
    assert not over.ok and over.needed_max_lora_rank == 32
    assert "start vLLM with --max-lora-rank 32, or plan again with --max-rank 16" in over.problems[0]
    assert check_vllm(peft(4, {"^a": 32}), max_lora_rank=32).ok
    assert check_vllm(peft(4, {"^a": 300}), max_lora_rank=512).needed_max_lora_rank == 320
    beyond = check_vllm(peft(8, {"^a": 1024}), max_lora_rank=512)
    assert not beyond.ok and beyond.needed_max_lora_rank is None and "largest max_lora_rank 512" in beyond.problems[0]
    assert check_vllm(peft(1), max_lora_rank=1).ok and check_vllm(peft(3)).needed_max_lora_rank == 8
    with pytest.raises(ConfigError) as bad:
        check_vllm(peft(8), max_lora_rank=24)
    assert bad.value.field == "max_lora_rank" and "[1, 8, 16, 32, 64, 128, 256, 320, 512]" in bad.value.message
    assert VLLM_MAX_LORA_RANKS == (1, 8, 16, 32, 64, 128, 256, 320, 512)


def test_vllm_rule_heads_shortcuts_and_scaling() -> None:
    assert check_vllm(peft(8, modules_to_save=["classifier", "score"])).ok
    pooler = check_vllm(peft(8, modules_to_save=["classifier", "bert.pooler"]))
    assert not pooler.ok and "['bert.pooler']" in pooler.problems[0]
    assert "shortcut" in check_vllm(peft(8), shortcuts=3).problems[0]
    assert not check_vllm(peft(8, use_dora=True)).ok
    rs = check_vllm(peft(8, {"^a": 16}, use_rslora=True))
    assert rs.ok and "alpha_pattern" in rs.notes[0]  # fine on vLLM releases that scale per module
    assert check_vllm(peft(8, use_rslora=True)).notes == []


@pytest.fixture(scope="module")
def capped_plan(minilm: tuple[LoadedModel, list[dict[str, torch.Tensor]]]) -> Plan:
    """A real MiniLM plan with `max_rank=8` where the budget would otherwise buy larger ranks."""
    loaded, batches = minilm
    config = AllocationConfig(budget={"like": {"r": 16, "types": ["q", "k", "v", "o"]}}, max_rank=8, num_batches=2)
    return heterolora.compute_plan(loaded.model, batches[:2], config, model_id="minilm", revision=loaded.revision)


def test_max_rank_caps_what_vllm_needs(capped_plan: Plan) -> None:
    check = check_plan(capped_plan, max_lora_rank=8)
    assert capped_plan.max_rank <= 8 and check.max_rank == capped_plan.max_rank and check.needed_max_lora_rank <= 8
    # MiniLM's seq-cls model mean-pools as its checkpoint declares: vLLM's seq-cls model pools [CLS].
    assert check.problems == [check.problems[0]] and "pooling the checkpoint declares" in check.problems[0]
    bert = capped_plan.model.model_copy(update={"architecture": "BertForSequenceClassification"})
    assert check_plan(capped_plan.model_copy(update={"model": bert}), max_lora_rank=8).ok


def test_show_check_vllm_exit_status(capped_plan: Plan, tmp_path: Path) -> None:
    peft_ok = capped_plan.peft.model_copy(update={"modules_to_save": ["classifier"]})
    bert = capped_plan.model.model_copy(update={"architecture": "BertForSequenceClassification"})  # [CLS] head
    ok_file = capped_plan.model_copy(update={"peft": peft_ok, "model": bert}).save(tmp_path / "ok.json")
    big = dict.fromkeys(capped_plan.peft.rank_pattern, 8) | {next(iter(capped_plan.peft.rank_pattern)): 64}
    big_file = capped_plan.model_copy(update={"peft": peft_ok.model_copy(update={"rank_pattern": big}), "model": bert})
    big_file = big_file.save(tmp_path / "big.json")
    runner = CliRunner()
    ok = runner.invoke(main, ["show", str(ok_file), "--check", "vllm"])
    assert ok.exit_code == 0 and ok.stdout.strip().endswith("compatible") and "--max-lora-rank 16" in ok.stdout
    over = runner.invoke(main, ["show", str(big_file), "--check", "vllm", "--max-lora-rank", "32"])
    assert over.exit_code == 1 and "largest rank 64" in over.stdout and "--max-lora-rank 64" in over.stdout
    assert runner.invoke(main, ["show", str(big_file), "--check", "vllm", "--max-lora-rank", "64"]).exit_code == 0
    bad = runner.invoke(main, ["show", str(ok_file), "--check", "vllm", "--max-lora-rank", "48"])
    assert bad.exit_code == 2 and "--max-lora-rank" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(main, ["show", str(ok_file), "--check", "tgi"]).exit_code == 2


def vllm_pattern_value(pattern: dict[str, float], name: str) -> float | None:
    """vLLM's rule (PEFTHelper._match_pattern): a key matches a suffix of the module name that
    starts at a '.' boundary, and the first match wins."""
    return next((v for k, v in pattern.items() if re.match(rf"(.*\.)?({k})$", name)), None)


def test_trained_adapter_config_resolves_every_rank(capped_plan: Plan, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel
    from peft.utils.other import get_pattern_key

    plan = capped_plan
    assert len({m.rank for m in plan.lora_modules if m.rank > 0}) > 1
    model = heterolora.apply_plan(load_model("minilm").model, plan)
    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "labels": torch.tensor([0, 1, 0, 1])}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(**batch).loss.backward()
    optimizer.step()  # a trained adapter: lora_B is no longer zero
    model.save_pretrained(tmp_path)

    config = LoraConfig.from_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    for m in plan.lora_modules:
        if m.rank == 0:
            assert m.name not in config.target_modules
            continue
        key = get_pattern_key(config.rank_pattern.keys(), m.name)
        assert config.rank_pattern[key] == m.rank and config.alpha_pattern[key] == m.alpha
        assert vllm_pattern_value(saved["rank_pattern"], m.name) == m.rank
        assert vllm_pattern_value(saved["alpha_pattern"], m.name) == m.alpha
    reloaded = PeftModel.from_pretrained(load_model("minilm").model, tmp_path)
    assert applied_ranks(reloaded) == plan.ranks
    trained_b = dict(model.named_parameters())
    assert any(n.endswith("lora_B.default.weight") and trained_b[n].abs().sum() > 0 for n in trained_b)
    for name, p in reloaded.named_parameters():
        if "lora_" in name:
            assert torch.equal(p, trained_b[name]), name
    assert check_adapter(tmp_path, max_lora_rank=8).ok  # PEFT's files alone do not say how the head pools
    plan.save(tmp_path / "plan.json")  # as heterolora.save_adapted writes it
    served = check_adapter(tmp_path, max_lora_rank=8)
    assert served.max_rank == plan.max_rank and served.problems == [served.problems[0]]
    assert "pooling the checkpoint declares" in served.problems[0]  # read from the plan saved beside it
