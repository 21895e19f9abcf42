"""Can a serving stack load this adapter? vLLM's multi-LoRA rules, checked without vLLM installed.

The rules, from vLLM's source (docs/serving.md has the details and links):
- `--max-lora-rank` takes only the values in `VLLM_MAX_LORA_RANKS` (`MaxLoRARanks` in
  vllm/config/lora.py) and defaults to 16;
- an adapter loads only if its largest rank, over `r` and every `rank_pattern` value, is at most
  `max_lora_rank` (`PEFTHelper.validate_legal` in vllm/lora/peft_helper.py);
- `modules_to_save` must be empty, or only a classification head named `classifier` / `score`;
- vLLM knows nothing of HeteroLoRA's shortcut modules.
`check_vllm` and `check_plan` need no torch, so a pipeline step can check a plan before training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heterolora.config import POOLED_HEAD
from heterolora.errors import ConfigError
from heterolora.plans import Plan

VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
VLLM_HEAD_MODULES = frozenset({"classifier", "score"})
STACKS = ("vllm",)


@dataclass
class ServingCheck:
    """What a stack needs to serve one adapter, and what stops it."""

    stack: str
    max_rank: int
    max_lora_rank: int
    needed_max_lora_rank: int | None  # smallest allowed value that fits; None: no value does
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        allowed = ", ".join(map(str, VLLM_MAX_LORA_RANKS))
        lines = [
            f"{self.stack}: largest rank {self.max_rank}; --max-lora-rank {self.max_lora_rank} "
            f"(allowed: {allowed}); smallest that fits: {self.needed_max_lora_rank or 'none'}",
            *(f"  problem: {p}" for p in self.problems),
            *(f"  note: {n}" for n in self.notes),
            "compatible" if self.ok else "NOT compatible",
        ]
        return "\n".join(lines)


def check_vllm(
    peft_config: Mapping[str, Any],
    *,
    max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK,
    shortcuts: int = 0,
    pooled_head: bool = False,
) -> ServingCheck:
    """Check LoraConfig fields (a plan's `peft` section or a saved adapter_config.json) against
    vLLM's rules for a server started with `--max-lora-rank max_lora_rank`. `pooled_head`: the model
    pools as its checkpoint declares (heterolora.heads), which vLLM's seq-cls models do not."""
    if max_lora_rank not in VLLM_MAX_LORA_RANKS:
        raise ConfigError(
            f"vLLM accepts --max-lora-rank only in {list(VLLM_MAX_LORA_RANKS)}, not {max_lora_rank}",
            field="max_lora_rank",
        )
    ranks = [int(peft_config["r"]), *(int(r) for r in (peft_config.get("rank_pattern") or {}).values())]
    largest = max(ranks)
    needed = next((v for v in VLLM_MAX_LORA_RANKS if v >= largest), None)
    check = ServingCheck("vllm", largest, max_lora_rank, needed)
    if needed is None:
        check.problems.append(f"rank {largest} exceeds vLLM's largest max_lora_rank {VLLM_MAX_LORA_RANKS[-1]}")
    elif largest > max_lora_rank:
        check.problems.append(
            f"rank {largest} > --max-lora-rank {max_lora_rank}: start vLLM with --max-lora-rank {needed}, "
            f"or plan again with --max-rank {max_lora_rank}"
        )
    extra = sorted(set(peft_config.get("modules_to_save") or ()) - VLLM_HEAD_MODULES)
    if extra:
        check.problems.append(
            f"modules_to_save {extra}: vLLM takes only a classifier/score head; "
            "train with apply_plan(..., train_head=False) or serve with PEFT"
        )
    if pooled_head:
        check.problems.append(
            "the classifier reads the pooling the checkpoint declares (e.g. mean over tokens); vLLM's "
            "seq-cls model pools its own way ([CLS] and the encoder's pooler): serve with PEFT or heterolora"
        )
    if shortcuts:
        check.problems.append(f"{shortcuts} shortcut modules: vLLM loads PEFT LoRA only; load with heterolora")
    if peft_config.get("use_rslora") and len(set(ranks)) > 1:
        check.notes.append(
            "rsLoRA with mixed ranks scales each module differently: needs a vLLM whose PEFTHelper "
            "reads rank_pattern/alpha_pattern (get_rank_and_scaling)"
        )
    if peft_config.get("use_dora") or peft_config.get("bias", "none") != "none":
        check.problems.append("DoRA and LoRA bias are not served by vLLM")
    return check


def check_plan(plan: Plan, stack: str = "vllm", *, max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK) -> ServingCheck:
    _known(stack)
    used = sum(1 for m in plan.shortcut_modules if m.rank > 0)
    pooled = plan.task == "seq-cls" and plan.model.architecture == POOLED_HEAD
    return check_vllm(plan.peft.model_dump(), max_lora_rank=max_lora_rank, shortcuts=used, pooled_head=pooled)


def check_adapter(
    directory: str | Path, stack: str = "vllm", *, max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK
) -> ServingCheck:
    """Check a saved adapter folder (what the server will actually read: adapter_config.json)."""
    _known(stack)
    from heterolora.apply import PLAN_FILE

    directory = Path(directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    shortcuts, pooled = 0, False
    if (directory / PLAN_FILE).is_file():
        plan = Plan.load(directory / PLAN_FILE)
        shortcuts = sum(1 for m in plan.shortcut_modules if m.rank > 0)
        pooled = plan.task == "seq-cls" and plan.model.architecture == POOLED_HEAD
    return check_vllm(config, max_lora_rank=max_lora_rank, shortcuts=shortcuts, pooled_head=pooled)


def _known(stack: str) -> None:
    if stack not in STACKS:
        raise ConfigError(f"unknown serving stack {stack!r}; known: {', '.join(STACKS)}", field="stack")
