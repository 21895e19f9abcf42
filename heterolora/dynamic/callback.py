"""DynamicCallback: dynamic HeteroLoRA inside a transformers Trainer.

- on_train_begin: learns the epoch length (for a fractional `realloc_every`); when resuming, restores
  the mask and history saved next to the checkpoint.
- on_step_begin: reallocates when due (before the step's first forward pass; with gradient
  accumulation the Trainer calls it once per optimizer step, when no gradient is pending).
- on_save: writes `heterolora_dynamic.json` into the checkpoint folder just saved.
- on_train_end: optionally writes the final selection as a static Plan.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from heterolora.dynamic.controller import STATE_FILE, DynamicController

log = logging.getLogger(__name__)


class DynamicCallback(TrainerCallback):
    """Drive a DynamicController from the Trainer's events.

    Args:
        controller: built on the model the Trainer trains.
        resume_from: checkpoint folder to restore the mask from; by default the Trainer's own
            `output_dir/checkpoint-<global_step>` when it resumes.
        export_to: write the final Plan (JSON) here at the end of training.
        tokenizer: the model's tokenizer, kept for the caller (heterolora.dynamic.attach sets it).
    """

    def __init__(
        self,
        controller: DynamicController,
        *,
        resume_from: str | Path | None = None,
        export_to: str | Path | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.controller = controller
        self.resume_from = resume_from
        self.export_to = export_to
        self.tokenizer = tokenizer

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        loader = kwargs.get("train_dataloader")
        if self.controller.steps_per_epoch is None and loader is not None and hasattr(loader, "__len__"):
            # the Trainer's own count: micro-batches per epoch over accumulation, rounded up
            self.controller.steps_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))
        if state.global_step > 0 or self.resume_from is not None:
            self._restore(args, state)

    def _restore(self, args: TrainingArguments, state: TrainerState) -> None:
        folder = Path(self.resume_from or Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if (folder / STATE_FILE).is_file():
            self.controller.load(folder)
            return
        # A checkpoint written without this callback: re-score at the first step instead.
        log.warning("no %s in %s; the active set is re-scored at the next step", STATE_FILE, folder)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.controller.maybe_reallocate(state.global_step, state.epoch)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if args.should_save:  # the main process only, as the Trainer's own files
            self.controller.save(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.export_to is not None and args.should_save and self.controller.history:
            self.controller.export_plan().save(self.export_to)
