"""Classification heads that follow the checkpoint: a sentence-transformers checkpoint declares how it
pools token states into a sentence vector (`modules.json` lists a Pooling module; its
`1_Pooling/config.json` names the mode). A seq-cls model of such a checkpoint pools that way and puts
one linear classifier on top, so the plan trains only `classifier` (for MiniLM, 770 parameters
instead of BERT's leftover pooler plus the classifier, 148,610). Other checkpoints keep their head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

POOLING_MODES = ("mean", "cls", "max")  # the sentence-transformers modes this head implements
_MODE_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}


def declared_pooling(read: Any) -> str | None:
    """The pooling mode a sentence-transformers checkpoint declares, or None (not such a checkpoint,
    or a mode or combination this head does not implement). `read(name)` returns a file's text from
    the checkpoint, or None when it is missing."""
    try:
        modules = json.loads(read("modules.json") or "null")
        pooling = next((m for m in modules or [] if str(m.get("type", "")).endswith("models.Pooling")), None)
        if pooling is None:
            return None
        config = json.loads(read(f"{pooling.get('path') or '1_Pooling'}/config.json") or "null") or {}
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None
    modes = [mode for mode, key in _MODE_KEYS.items() if config.get(key)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in _MODE_KEYS.values()]
    return modes[0] if len(modes) == 1 and not others else None


def folder_reader(folder: str | Path) -> Any:
    def read(name: str) -> str | None:
        path = Path(folder) / name
        return path.read_text() if path.is_file() else None

    return read


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(batch, tokens, width) token states -> (batch, width) sentence vectors, padding left out."""
    if mode == "cls":
        return hidden[:, 0]
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(keep == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class PooledSequenceClassifier(nn.Module):  # its name is config.POOLED_HEAD (the plan's model.architecture)
    """A sequence classifier built from a transformers seq-cls model: its encoder (`<prefix>`, without
    the encoder's own pooler), the checkpoint's pooling, dropout and its `classifier` (a fresh linear
    layer). Module names inside the encoder stay those of the seq-cls model, so plans and adapters
    address the same sites."""

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling mode {mode!r} is not one of {POOLING_MODES}")
        self.config = model.config
        self.base_model_prefix = model.base_model_prefix
        encoder = getattr(model, model.base_model_prefix)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        self.add_module(model.base_model_prefix, encoder)
        self.pooling = mode
        self.dropout = nn.Dropout(getattr(model.config, "hidden_dropout_prob", 0.1))
        width, labels = model.config.hidden_size, model.config.num_labels
        head = getattr(model, "classifier", None)
        fits = isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (width, labels)
        self.classifier = head if fits else nn.Linear(width, labels)  # the loaded (seeded) head when it fits

    @property
    def encoder_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder_model.get_input_embeddings()

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.encoder_model.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.encoder_model.gradient_checkpointing_disable()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **_: Any,
    ) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.encoder_model(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **extra
        )
        hidden = out.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device, dtype=torch.long)
        logits = self.classifier(self.dropout(pool(hidden, attention_mask, self.pooling)))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
