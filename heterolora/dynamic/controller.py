"""DynamicController: re-score every unit on a schedule and keep only the best-scored set active.

Use it directly in a plain PyTorch loop (call `maybe_reallocate(step)` before each step's forward
pass), or through `DynamicCallback` with a transformers Trainer.

Switching a unit off and back on (decided here, as the authors do):
- weights are kept: nothing is reset, re-initialised, merged or copied; a unit resumes from the
  weights it had when it was switched off;
- optimizer state is kept: an inactive unit's `.grad` is None, and torch's AdamW/Adam/SGD skip a
  parameter whose grad is None, so there is no update and no weight decay, and its moments and step
  count freeze; on re-enable it continues with those (stale) moments.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from heterolora.dynamic.config import DynamicConfig, FinalSelection
from heterolora.dynamic.export import build_plan
from heterolora.dynamic.prepare import default_units
from heterolora.dynamic.scoring import Batches, score_units
from heterolora.dynamic.selection import check_active_budget, score_keys, select
from heterolora.dynamic.units import Unit
from heterolora.errors import ConfigError, DataError, PlanError
from heterolora.plans import Plan
from heterolora.proxies import get_proxy

STATE_FILE = "heterolora_dynamic.json"  # written next to each checkpoint
STATE_FORMAT = "heterolora-dynamic/1"
# Weights of units PEFT does not save with its adapter (shortcuts), next to the state file.
UNITS_FILE = "heterolora_dynamic_units.safetensors"
# Fewer LoRA units than this share active at once is warned about: on MiniLM/MRPC 7 of 36 active
# lost 8 points to uniform LoRA, 13-15 of 36 tied it (docs/dynamic.md, "Measured quality"); the
# paper's quarter (floor(0.25 n)) stays above it.
NARROW_SHARE = 0.2
log = logging.getLogger(__name__)


class DynamicController:
    """Owns the units, the scoring set, the active mask and the reallocation history.

    Args:
        model: the PEFT-wrapped model being trained (see `prepare_model`).
        scoring_batches: the fixed scoring set, the same batches at every reallocation (and, under
            DDP, in every process); with labels for proxies that need them.
        units: toggleable units; defaults to every LoRA layer and switchable shortcut of the model.
        steps_per_epoch: optimizer steps per epoch; needed for a fractional `realloc_every`, and
            makes the schedule restart at each epoch (the authors' rule).
        model_id: recorded in the exported plan.
    """

    def __init__(
        self,
        model: nn.Module,
        scoring_batches: Batches,
        config: DynamicConfig | None = None,
        *,
        units: Sequence[Unit] | None = None,
        steps_per_epoch: int | None = None,
        model_id: str = "model",
    ) -> None:
        self.model = model
        self.config = config or DynamicConfig()
        self.units: list[Unit] = list(units) if units is not None else default_units(model)
        self.batches = list(scoring_batches)
        self.steps_per_epoch = steps_per_epoch
        self.model_id = model_id
        self.history: list[dict[str, Any]] = []
        self.active: frozenset[str] | None = None  # None until the first selection
        self._check()

    def _check(self) -> None:
        spec = get_proxy(self.config.proxy)
        if spec.needs_data and not self.batches:
            raise DataError("no scoring batches", field="scoring_batches")
        if spec.needs_labels and any("labels" not in b for b in self.batches):
            raise DataError(f"proxy {self.config.proxy!r} needs labelled scoring batches", field="scoring_batches")
        names = [u.name for u in self.units]
        if len(set(names)) != len(names):
            raise ConfigError("unit names must be unique", field="units")
        check_active_budget(self.units, self.config)

    # ---- schedule ----------------------------------------------------------------------
    @property
    def interval(self) -> int:
        """Optimizer steps between reallocations."""
        return self.config.interval(self.steps_per_epoch)

    def due(self, step: int) -> bool:
        """Reallocate at step 0 and every `interval` steps; with a known epoch length the count
        restarts each epoch, so every epoch also starts with a reallocation."""
        if self.active is None:
            return True
        local = step % self.steps_per_epoch if self.steps_per_epoch else step
        return local % self.interval == 0

    def maybe_reallocate(self, step: int, epoch: float | None = None) -> bool:
        """Call before the forward pass of optimizer step `step` (0-based). True if it reallocated."""
        if not self.due(step) or (self.history and self.history[-1]["step"] == step and self.active is not None):
            return False
        self.reallocate(step, epoch)
        return True

    # ---- one reallocation --------------------------------------------------------------
    def reallocate(self, step: int = 0, epoch: float | None = None) -> frozenset[str]:
        """Score every unit, select under the budget, switch the others off, record it.

        Clears every parameter's `.grad` (the proxies' backward pass runs on this model), so call
        it between optimizer steps, not in the middle of gradient accumulation.
        """
        t0 = time.perf_counter()
        try:
            scores = score_units(self.model, self.units, self.batches, self.config.proxy, self.config.seed)
        except BaseException:
            if self.active is not None:
                self.set_active(self.active)  # scoring switched everything on: undo that
            raise
        chosen = agree(select(self.units, score_keys(self.units, scores, self.config), self.config, len(self.history)))
        self.set_active(chosen)
        if not self.history:
            warn_if_narrow(self.units, chosen)
        self.history.append(
            {
                "index": len(self.history),
                "step": step,
                "epoch": epoch,
                "seconds": round(time.perf_counter() - t0, 4),
                "active": sorted(chosen),
                "active_params": self.active_params,
                "scores": scores,
            }
        )
        return frozenset(chosen)

    def set_active(self, names: Sequence[str] | frozenset[str] | set[str]) -> None:
        """Switch exactly `names` on and every other unit off."""
        wanted = set(names)
        unknown = sorted(wanted - {u.name for u in self.units})
        if unknown:
            raise ConfigError(f"unknown units, e.g. {unknown[0]}", field="active")
        for u in self.units:
            u.enable(u.name in wanted)
        self.active = frozenset(wanted)

    @property
    def active_params(self) -> int:
        """Adapter parameters of the units switched on now (the task head is not a unit)."""
        return sum(u.params for u in self.units if u.enabled)

    def frequencies(self) -> dict[str, int]:
        """How many reallocations switched each unit on."""
        counts = Counter(n for record in self.history for n in record["active"])
        return {u.name: counts.get(u.name, 0) for u in self.units}

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": self.config.model_dump(),
            "units": [u.name for u in self.units],
            "active": None if self.active is None else sorted(self.active),
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the mask and the history (the model's weights come from the checkpoint itself)."""
        if state.get("format") != STATE_FORMAT:
            raise PlanError(f"not a dynamic HeteroLoRA state (format {state.get('format')!r})", field="checkpoint")
        if state["units"] != [u.name for u in self.units]:
            raise PlanError("the saved state belongs to a different set of units", field="checkpoint")
        self.history = list(state["history"])
        if state["active"] is not None:
            self.set_active(state["active"])

    def save(self, folder: str | Path) -> Path:
        """Write the state file (and the weights of non-LoRA units) into `folder`."""
        from safetensors.torch import save_file

        path = Path(folder) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.state_dict(), indent=1) + "\n")
        weights = self._unit_weights()
        if weights:
            save_file({k: p.detach().cpu().contiguous() for k, p in weights.items()}, path.parent / UNITS_FILE)
        return path

    def load(self, folder: str | Path) -> None:
        """Restore what `save` wrote: mask, history, and the weights of non-LoRA units."""
        from safetensors.torch import load_file

        path = Path(folder) / STATE_FILE
        if not path.is_file():
            raise PlanError(f"no {STATE_FILE} in {str(folder)!r}", field="checkpoint")
        weights = self._unit_weights()
        if weights:
            saved = load_file(path.parent / UNITS_FILE) if (path.parent / UNITS_FILE).is_file() else {}
            if set(saved) != set(weights):
                raise PlanError(f"{UNITS_FILE} in {str(folder)!r} does not match the units", field="checkpoint")
            with torch.no_grad():
                for key, p in weights.items():
                    p.copy_(saved[key])
        self.load_state_dict(json.loads(path.read_text()))

    def _unit_weights(self) -> dict[str, nn.Parameter]:
        return {f"{u.name}.{j}": p for u in self.units if u.kind != "lora" for j, p in enumerate(u.parameters())}

    # ---- export ------------------------------------------------------------------------
    def final_selection(self, final: FinalSelection | None = None) -> frozenset[str]:
        """The last selection, or the units active most often, re-selected under the same budget
        (ties: the last score, then the seeded key)."""
        if not self.history:
            raise ConfigError("no reallocation has run yet", field="final")
        if (final or self.config.final) == "last":
            return frozenset(self.history[-1]["active"])
        freq, last = self.frequencies(), self.history[-1]["scores"]
        keys = {u.name: (float(freq[u.name]), float(last[u.name])) for u in self.units}
        return frozenset(select(self.units, keys, self.config, len(self.history)))

    def export_plan(self, final: FinalSelection | None = None) -> Plan:
        """A static Plan for inference or a static re-run: the final selection at its ranks."""
        return build_plan(
            self.model,
            self.units,
            self.config,
            self.history,
            model_id=self.model_id,
            chosen=self.final_selection(final),
            final=final or self.config.final,
        )


def warn_if_narrow(units: Sequence[Unit], chosen: set[str]) -> None:
    """Log a warning when the budget keeps only a small share of the LoRA units on at once."""
    lora = [u for u in units if u.kind == "lora"]
    active = sum(u.name in chosen for u in lora)
    if lora and active < NARROW_SHARE * len(lora):
        log.warning(
            "only %d of %d LoRA units fit the active budget at once; most sites will barely train. "
            "Allocate the candidates at a lower rank (docs/dynamic.md, 'Measured quality').",
            active,
            len(lora),
        )


def agree(names: set[str]) -> set[str]:
    """Under torch.distributed every process takes rank 0's selection: scores agree only up to
    floating-point noise across devices, and a near-tie must not split the processes' masks."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return names
    box: list[Any] = [sorted(names)]
    dist.broadcast_object_list(box, src=0)
    return set(box[0])
