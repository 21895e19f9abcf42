"""Turn a dynamic run's final selection into a static Plan (selected units at their rank, others 0)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from heterolora import __version__
from heterolora.config import TASK_TYPES
from heterolora.errors import ConfigError
from heterolora.plans import BudgetInfo, ModuleEntry, Plan, build_peft_kwargs
from heterolora.search_space import head_modules, model_info

if TYPE_CHECKING:
    from heterolora.dynamic.controller import DynamicController

TASK_OF_PEFT_TYPE = {peft: task for task, peft in TASK_TYPES.items()}


def build_plan(ctl: DynamicController, chosen: frozenset[str], final: str) -> Plan:
    from heterolora.dynamic.scoring import inner_model

    base = inner_model(ctl.model)
    peft_cfg = _peft_config(ctl.model)
    task = TASK_OF_PEFT_TYPE.get(str(getattr(peft_cfg.task_type, "value", peft_cfg.task_type)), "seq-cls")
    last = ctl.history[-1]["scores"]
    modules = []
    for u in ctl.units:  # LoRA units, then shortcut units
        c, rank = u.candidate, (u.rank if u.name in chosen else 0)
        modules.append(
            ModuleEntry(
                name=u.name,
                kind="shortcut" if u.kind == "shortcut" else "lora",
                type=u.type,
                layer=u.layer,
                rank=rank,
                alpha=u.alpha if rank else 0.0,
                score=float(last[u.name]),
                params=rank * c.cost_per_rank,
                d_in=c.d_in,
                d_out=c.d_out,
            )
        )
    used = sum(m.params for m in modules)
    config = ctl.config
    request: dict[str, Any] = {"mode": config.mode}
    if config.active_params is not None:
        request["active_params"] = config.active_params
    else:
        request["active_fraction"] = config.active_fraction
    seconds = [float(r["seconds"]) for r in ctl.history]
    return Plan(
        heterolora_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=model_info(base, ctl.model_id),
        task=task,
        proxy=config.proxy,
        seed=config.seed,
        budget=BudgetInfo(kind=config.budget_kind, request=request, limit=config.active_params or used, used=used),
        alpha_mode="rslora" if peft_cfg.use_rslora else "constant_ratio",
        settings={"dynamic": config.model_dump(), "final": final, "reallocations": len(ctl.history)},
        modules=modules,
        peft=build_peft_kwargs(
            modules,
            use_rslora=bool(peft_cfg.use_rslora),
            fan_in_fan_out=bool(peft_cfg.fan_in_fan_out),
            modules_to_save=head_modules(base) if task == "seq-cls" else None,
            task_type=TASK_TYPES[task],
        ),
        shortcuts=_shortcut_section(ctl, base, peft_cfg),
        timings={"realloc_total_s": round(sum(seconds), 4), "realloc_mean_s": round(sum(seconds) / len(seconds), 4)},
    )


def _shortcut_section(ctl: DynamicController, base: Any, peft_cfg: Any) -> dict[str, Any] | None:
    count = sum(u.kind == "shortcut" for u in ctl.units)
    if not count:
        return None
    from heterolora.config import AllocationConfig
    from heterolora.shortcuts import shortcut_section

    mode = "separated" if ctl.config.mode == "separated" else "combined"
    static = AllocationConfig(
        shortcuts=True,
        shortcut_mode=mode,
        shortcut_share=ctl.config.shortcut_share,
        use_rslora=bool(peft_cfg.use_rslora),
    )
    return shortcut_section(base, static, count)


def _peft_config(model: Any) -> Any:
    configs = getattr(model, "peft_config", None)
    if not configs:
        raise ConfigError("export needs the PEFT-wrapped model (see prepare_model)", field="model")
    return configs.get("default", next(iter(configs.values())))
