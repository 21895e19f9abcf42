"""Site discovery and canonical types on every supported architecture."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from heterolora.errors import ConfigError, UnsupportedModelError
from heterolora.search_space import discover, head_modules

EXPECTED_TYPES = {
    "bert": ["q", "k", "v", "o", "up", "down"],
    "roberta": ["q", "k", "v", "o", "up", "down"],
    "opt": ["k", "v", "q", "o", "up", "down"],
    "llama": ["q", "k", "v", "o", "gate", "up", "down"],
    "gpt2": ["qkv", "o", "up", "down"],
}


@pytest.mark.parametrize("arch", sorted(EXPECTED_TYPES))
def test_types_per_layer(arch: str) -> None:
    sites = discover(tiny_model(arch))
    assert [c.type for c in sites if c.layer == 0] == EXPECTED_TYPES[arch]
    assert [c.type for c in sites if c.layer == 1] == EXPECTED_TYPES[arch]
    assert len({c.name for c in sites}) == len(sites)


def test_dimensions_and_conv1d() -> None:
    gpt2 = {c.type: c for c in discover(tiny_model("gpt2")) if c.layer == 0}
    assert (gpt2["qkv"].d_in, gpt2["qkv"].d_out, gpt2["qkv"].conv1d) == (32, 96, True)
    assert gpt2["down"].cost_per_rank == 128 + 32
    llama = {c.type: c for c in discover(tiny_model("llama")) if c.layer == 0}
    assert (llama["k"].d_in, llama["k"].d_out) == (32, 16)  # grouped-query attention
    assert llama["q"].name == "model.layers.0.self_attn.q_proj"


def test_restrict_by_type_and_layer() -> None:
    sites = discover(tiny_model("bert"), types=["q", "v"], layers=[1])
    assert [c.name for c in sites] == [
        "bert.encoder.layer.1.attention.self.query",
        "bert.encoder.layer.1.attention.self.value",
    ]


def test_restrictions_that_match_nothing_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"types \['gate'\] do not exist") as err:
        discover(tiny_model("bert"), types=["gate"])
    assert err.value.field == "types"
    with pytest.raises(ConfigError, match="out of range") as err:
        discover(tiny_model("bert"), layers=[5])
    assert err.value.field == "layers"


def test_model_without_layers_names_what_is_missing() -> None:
    with pytest.raises(UnsupportedModelError, match="no transformer layers found in Sequential"):
        discover(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_head_modules() -> None:
    assert head_modules(tiny_model("bert")) == ["classifier", "bert.pooler"]
    assert head_modules(tiny_model("llama")) == ["score"]
    assert head_modules(tiny_model("llama", "causal-lm")) == []


GENERIC = {
    "distilbert": ("DistilBertConfig", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
                   ["q", "k", "v", "o", "up", "down"]),
    "phi": ("PhiConfig", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
            ["q", "k", "v", "o", "up", "down"]),
    "qwen2": ("Qwen2Config", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "num_key_value_heads": 1, "intermediate_size": 64},
              ["q", "k", "v", "o", "gate", "up", "down"]),
}  # fmt: skip


@pytest.mark.parametrize("arch", sorted(GENERIC))
def test_generic_discovery_and_peft_on_other_architectures(arch: str) -> None:
    import transformers
    from conftest import random_batches
    from peft import get_peft_model

    from heterolora.apply import applied_ranks
    from heterolora.config import AllocationConfig
    from heterolora.engine import compute_plan

    cls, kwargs, types = GENERIC[arch]
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(
        getattr(transformers, cls)(vocab_size=128, pad_token_id=0, **kwargs)
    )
    assert [c.type for c in discover(model) if c.layer == 1] == types
    plan = compute_plan(model, random_batches(), AllocationConfig(budget={"trainable_params": 2500}))
    peft_model = get_peft_model(model, plan.to_lora_config())
    assert applied_ranks(peft_model) == {m.name: m.rank for m in plan.modules if m.rank}
