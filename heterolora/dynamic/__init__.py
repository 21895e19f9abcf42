"""Dynamic HeteroLoRA (the paper, §5, arXiv 2406.14956): every candidate allocated at its rank,
only the best-scored share active, re-scored during training. See docs/dynamic.md.

    model, callback = heterolora.dynamic.attach("minilm", samples, budget={"trainable_params": 60_000})
    Trainer(model=model, ..., callbacks=[callback]).train()
    callback.controller.export_plan().save("plan.json")

The parts (prepare_model, DynamicController, DynamicCallback, units) stay available for a plain
PyTorch loop or custom units.
"""

from heterolora.dynamic.callback import DynamicCallback
from heterolora.dynamic.config import DynamicConfig, DynamicMode, FinalSelection
from heterolora.dynamic.controller import STATE_FILE, DynamicController
from heterolora.dynamic.entry import attach
from heterolora.dynamic.prepare import default_units, prepare_model
from heterolora.dynamic.shortcut_units import ShortcutUnit, shortcut_units
from heterolora.dynamic.units import CandidateUnit, LoraUnit, Unit, lora_units

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
    "attach",
    "default_units",
    "lora_units",
    "prepare_model",
    "shortcut_units",
]
