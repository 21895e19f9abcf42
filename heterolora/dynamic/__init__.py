"""Dynamic HeteroLoRA (spec §5): every candidate allocated at its rank, only the best-scored share
active, re-scored during training. See docs/dynamic.md.

    model = prepare_model(base_model, rank=8)             # LoRA on every candidate
    ctl = DynamicController(model, scoring_batches, DynamicConfig(realloc_every=0.2))
    trainer = Trainer(model, ..., callbacks=[DynamicCallback(ctl)])   # or ctl.maybe_reallocate(step)
    ctl.export_plan().save("plan.json")
"""

from heterolora.dynamic.callback import DynamicCallback
from heterolora.dynamic.config import DynamicConfig, DynamicMode, FinalSelection
from heterolora.dynamic.controller import STATE_FILE, DynamicController
from heterolora.dynamic.scoring import SCORERS
from heterolora.dynamic.units import LoraUnit, Unit, lora_units, prepare_model

__all__ = [
    "SCORERS",
    "STATE_FILE",
    "DynamicCallback",
    "DynamicConfig",
    "DynamicController",
    "DynamicMode",
    "FinalSelection",
    "LoraUnit",
    "Unit",
    "lora_units",
    "prepare_model",
]
