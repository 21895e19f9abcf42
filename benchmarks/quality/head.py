"""The benchmark's classification head: masked mean pooling + a linear classifier.

all-MiniLM-L6-v2 was trained with mean pooling; its BERT pooler (a tanh layer on [CLS]) is a
leftover of pre-training. Mean pooling starts from the features the model was trained to make,
and leaves a 770-parameter head, so the LoRA allocation (not the head) decides the result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolClassifier(nn.Module):
    """A BERT encoder (`bert`, no pooler) and its `classifier` over the masked token mean."""

    base_model_prefix = "bert"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.config = model.config
        self.bert = model.bert
        self.bert.pooler = None
        self.dropout = nn.Dropout(model.config.hidden_dropout_prob)
        self.classifier = model.classifier

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
        )
        if attention_mask is None:
            attention_mask = torch.ones(hidden.last_hidden_state.shape[:2], device=hidden.last_hidden_state.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.last_hidden_state.dtype)
        pooled = (hidden.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
