"""Where shortcut terms enter a layer, found from the model's own modules (no edits to its code).

post-LN (BERT, OPT-350M style): a sub-block's output is `LN(residual + block)`, so a term added to
the LayerNorm's *input* joins the sum the model already normalises. pre-LN (LLaMA, GPT-2, OPT with
`do_layer_norm_before`): the residual stream is never normalised in place, so terms are added to
the attention module's output (which the layer adds to the stream) and to the layer's output.
Either way a zero term leaves every tensor unchanged. Re-applying the LayerNorm after the add, as
the authors do (the paper, §2.2, arXiv 2406.14956), would change the pretrained function, so it is not done here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from heterolora.architectures import norm_placement
from heterolora.errors import UnsupportedModelError
from heterolora.search_space import find_layers

Placement = Literal["pre", "post"]

# Names relative to a layer, tried in order. post-LN: LN after attention; pre-LN: the attention module.
POST_ATTN_NORMS = ("attention.output.LayerNorm", "self_attn_layer_norm", "sa_layer_norm")
PRE_ATTN_MODULES = ("self_attn", "attn", "attention", "self_attention")
# The LayerNorm of the FFN block: post-LN after it, pre-LN in front of it.
POST_FFN_NORMS = ("output.LayerNorm", "final_layer_norm", "output_layer_norm")
PRE_FFN_NORMS = ("post_attention_layernorm", "ln_2", "final_layer_norm")
# Layouts whose residual stream does not follow attention -> FFN in sequence.
PARALLEL_FLAGS = ("use_parallel_residual", "parallel_attn", "parallel_residual")
SANDWICH_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


@dataclass(frozen=True)
class Layout:
    """Hook points shared by every layer of a model (names relative to the layer)."""

    placement: Placement
    layers: str  # dotted path of the nn.ModuleList of layers
    attn: str  # post: LN after attention (term added to its input); pre: attention module (to its output)
    ffn_norm: str  # post: LN after the FFN (term added to its input); pre: LN before the FFN (reads its input)
    hidden_size: int

    def as_dict(self) -> dict[str, object]:
        return {
            "placement": self.placement,
            "layers": self.layers,
            "attn": self.attn,
            "ffn_norm": self.ffn_norm,
            "hidden_size": self.hidden_size,
        }


def _unsupported(model: nn.Module, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"{type(model).__name__} cannot take shortcut connections: {why}", field="shortcuts")


def _first_present(layer: nn.Module, names: tuple[str, ...]) -> str | None:
    present = dict(layer.named_modules())
    return next((n for n in names if n in present), None)


def _check_config(model: nn.Module, config: object) -> None:
    for flag in PARALLEL_FLAGS:
        if getattr(config, flag, False):
            raise _unsupported(model, f"config.{flag} is set (attention and FFN read the same input in parallel)")
    if getattr(config, "chunk_size_feed_forward", 0):
        raise _unsupported(model, "config.chunk_size_feed_forward > 0 splits the FFN input into chunks")
    if getattr(config, "add_cross_attention", False):
        raise _unsupported(model, "cross-attention layers sit between the attention and FFN blocks")


def find_layout(model: nn.Module) -> Layout:
    """The hook points of `model`, or UnsupportedModelError naming what does not fit."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", "")
    placement = norm_placement(model_type, config)
    if placement is None:
        raise _unsupported(model, f"model_type {model_type!r} has no known LayerNorm placement (pre/post)")
    _check_config(model, config)
    prefix, layers = find_layers(model)
    first = layers[0]
    if _first_present(first, SANDWICH_NORMS):
        raise _unsupported(model, "sandwich LayerNorms around the FFN block")
    attn_names = POST_ATTN_NORMS if placement == "post" else PRE_ATTN_MODULES
    ffn_names = POST_FFN_NORMS if placement == "post" else PRE_FFN_NORMS
    attn, ffn_norm = _first_present(first, attn_names), _first_present(first, ffn_names)
    if attn is None or ffn_norm is None:
        missing = attn_names if attn is None else ffn_names
        raise _unsupported(model, f"{placement}-LN layer {type(first).__name__} has none of {list(missing)}")
    for i, layer in enumerate(layers):
        if _first_present(layer, (attn,)) is None or _first_present(layer, (ffn_norm,)) is None:
            raise _unsupported(model, f"layer {i} lacks {attn!r} or {ffn_norm!r}; layers must share one layout")
    d = getattr(config, "hidden_size", None)
    if not isinstance(d, int):
        raise _unsupported(model, "config.hidden_size is not set")
    return Layout(placement, prefix, attn, ffn_norm, d)
