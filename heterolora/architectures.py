"""Per-architecture facts: where the transformer layers live, how sites map to canonical types,
and where the LayerNorm sits (needed to place shortcuts without changing the model's function).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Norm = Literal["pre", "post", "config"]


@dataclass(frozen=True)
class ArchSpec:
    layers_suffix: str  # dotted suffix of the nn.ModuleList holding the layers
    norm: Norm  # "config": read config.do_layer_norm_before (OPT)


ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec("encoder.layer", "post"),
    "roberta": ArchSpec("encoder.layer", "post"),
    "xlm-roberta": ArchSpec("encoder.layer", "post"),
    "electra": ArchSpec("encoder.layer", "post"),
    "opt": ArchSpec("decoder.layers", "config"),
    "llama": ArchSpec("layers", "pre"),
    "mistral": ArchSpec("layers", "pre"),
    "qwen2": ArchSpec("layers", "pre"),
    "qwen3": ArchSpec("layers", "pre"),
    "gemma": ArchSpec("layers", "pre"),
    "phi3": ArchSpec("layers", "pre"),
    "gpt2": ArchSpec("h", "pre"),
    "gpt_neox": ArchSpec("layers", "pre"),
}

# Ordered rules: the first regex that matches a site's path *inside its layer* gives its type.
# They cover the tested architectures and the common naming schemes of others.
SITE_RULES: list[tuple[str, str]] = [
    (r"(.*\.)?(q_proj|query|q_lin|wq|to_q)$", "q"),
    (r"(.*\.)?(k_proj|key|k_lin|wk|to_k)$", "k"),
    (r"(.*\.)?(v_proj|value|v_lin|wv|to_v)$", "v"),
    (r"(.*\.)?(c_attn|qkv_proj|query_key_value|wqkv|qkv|in_proj)$", "qkv"),
    (r"(.*\.)?(o_proj|out_proj|out_lin|wo|dense_out)$", "o"),
    (r"(attention|attn|self_attn)\.(output\.)?(dense|c_proj|proj)$", "o"),
    (r"(.*\.)?(gate_proj|w_gate)$", "gate"),
    (r"(.*\.)?(up_proj|fc1|c_fc|lin1|fc_in|dense_h_to_4h|w1)$", "up"),
    (r"intermediate\.dense$", "up"),
    (r"(.*\.)?(down_proj|fc2|lin2|fc_out|dense_4h_to_h|w2)$", "down"),
    (r"(mlp|ffn|feed_forward)\.(c_proj|proj|dense)$", "down"),
    (r"output\.dense$", "down"),
]
_COMPILED = [(re.compile(p, re.IGNORECASE), t) for p, t in SITE_RULES]


def site_type(relative_name: str) -> str | None:
    """Canonical type of a linear site from its name relative to its layer, or None."""
    for pattern, kind in _COMPILED:
        if pattern.fullmatch(relative_name):
            return kind
    return None


def norm_placement(model_type: str, config: object) -> Literal["pre", "post"] | None:
    spec = ARCHITECTURES.get(model_type)
    if spec is None:
        return None
    if spec.norm == "config":
        return "pre" if getattr(config, "do_layer_norm_before", True) else "post"
    return spec.norm
