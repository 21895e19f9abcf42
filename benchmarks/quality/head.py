"""The benchmark's `--head mean`: masked mean pooling + a linear classifier (rounds 1-2).

The product now builds this head itself for a sentence-transformers checkpoint that declares mean
pooling (`heterolora.heads`, MiniLM included), so for MiniLM `--head mean` and `--head shipped` are
the same model; on another model `mean_head` wraps it the same way.
"""

from __future__ import annotations

from torch import nn

from heterolora.heads import PooledSequenceClassifier


def mean_head(model: nn.Module) -> nn.Module:
    """`model` with masked mean pooling and its classifier (unchanged if it pools so already)."""
    if isinstance(model, PooledSequenceClassifier) and model.pooling == "mean":
        return model
    return PooledSequenceClassifier(model, "mean")
