"""Dynamic HeteroLoRA (spec §5): every candidate allocated at its rank, only the best-scored share
active, re-scored during training. See docs/dynamic.md.

    model = prepare_model(base_model, rank=8)             # LoRA on every candidate (+ shortcuts=True)
    ctl = DynamicController(model, scoring_batches, DynamicConfig(realloc_every=0.2))
    trainer = Trainer(model, ..., callbacks=[DynamicCallback(ctl)])   # or ctl.maybe_reallocate(step)
    ctl.export_plan().save("plan.json")
"""

from heterolora.dynamic.callback import DynamicCallback
from heterolora.dynamic.config import DynamicConfig, DynamicMode, FinalSelection
from heterolora.dynamic.controller import STATE_FILE, DynamicController
from heterolora.dynamic.shortcut_units import ShortcutUnit, shortcut_units
from heterolora.dynamic.units import CandidateUnit, LoraUnit, Unit, default_units, lora_units, prepare_model

__all__ = [
    "STATE_FILE",
    "CandidateUnit",
    "DynamicCallback",
    "DynamicConfig",
    "DynamicController",
    "DynamicMode",
    "FinalSelection",
    "LoraUnit",
    "ShortcutUnit",
    "Unit",
    "default_units",
    "lora_units",
    "prepare_model",
    "shortcut_units",
]
