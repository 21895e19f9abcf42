"""Turn a dynamic run's final selection into a static Plan (selected units at their rank, others 0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from heterolora.config import TASK_TYPES, AllocationConfig
from heterolora.dynamic.config import DynamicConfig
from heterolora.dynamic.scoring import inner_model
from heterolora.dynamic.units import Unit
from heterolora.errors import ConfigError
from heterolora.plans import BudgetInfo, ModuleEntry, Plan
from heterolora.search_space import head_modules, model_info
from heterolora.shortcuts import shortcut_section

TASK_OF_PEFT_TYPE = {peft: task for task, peft in TASK_TYPES.items()}


def build_plan(
    model: nn.Module,
    units: Sequence[Unit],
    config: DynamicConfig,
    history: list[dict[str, Any]],
    *,
    model_id: str,
    chosen: frozenset[str],
    final: str,
) -> Plan:
    """The plan of a dynamic run (`history`: the controller's reallocation records)."""
    base = inner_model(model)
    peft_cfg = _peft_config(model)
    task = TASK_OF_PEFT_TYPE.get(str(getattr(peft_cfg.task_type, "value", peft_cfg.task_type)), "seq-cls")
    last = history[-1]["scores"]
    modules = [  # LoRA units, then shortcut units
        ModuleEntry.from_candidate(
            u.candidate, rank=u.rank if u.name in chosen else 0, alpha=u.alpha, score=float(last[u.name])
        )
        for u in units
    ]
    used = sum(m.params for m in modules)
    request: dict[str, Any] = {"mode": config.mode}
    if config.active_params is not None:
        request["active_params"] = config.active_params
    else:
        request["active_fraction"] = config.active_fraction
    seconds = [float(r["seconds"]) for r in history]
    return Plan.build(
        model=model_info(base, model_id),
        task=task,
        proxy=config.proxy,
        seed=config.seed,
        budget=BudgetInfo(kind=config.budget_kind, request=request, limit=config.active_params or used, used=used),
        modules=modules,
        use_rslora=bool(peft_cfg.use_rslora),
        fan_in_fan_out=bool(peft_cfg.fan_in_fan_out),
        modules_to_save=head_modules(base),
        settings={"dynamic": config.model_dump(), "final": final, "reallocations": len(history)},
        shortcuts=_shortcut_section(units, config, base, peft_cfg),
        timings={"realloc_total_s": round(sum(seconds), 4), "realloc_mean_s": round(sum(seconds) / len(seconds), 4)},
    )


def _shortcut_section(
    units: Sequence[Unit], config: DynamicConfig, base: nn.Module, peft_cfg: Any
) -> dict[str, Any] | None:
    count = sum(u.kind == "shortcut" for u in units)
    if not count:
        return None
    static = AllocationConfig(
        shortcuts=True,
        shortcut_mode="separated" if config.mode == "separated" else "combined",
        shortcut_share=config.shortcut_share,
        use_rslora=bool(peft_cfg.use_rslora),
    )
    return shortcut_section(base, static, count)


def _peft_config(model: Any) -> Any:
    configs = getattr(model, "peft_config", None)
    if not configs:
        raise ConfigError("export needs the PEFT-wrapped model (see prepare_model)", field="model")
    return configs.get("default", next(iter(configs.values())))
