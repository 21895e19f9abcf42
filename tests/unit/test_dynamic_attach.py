"""heterolora.dynamic.attach: dynamic HeteroLoRA from what heterolora.plan takes (the real MiniLM)."""

from __future__ import annotations

import pytest

import heterolora.dynamic
from heterolora.errors import ConfigError
from heterolora.samples import builtin_sample

ROWS = builtin_sample()[:16]


def test_budget_forms_become_the_dynamic_budget() -> None:
    model, callback = heterolora.dynamic.attach("minilm", ROWS, num_batches=1, device="cpu", seed=4)
    ctl = callback.controller
    assert ctl.model is model and hasattr(model, "peft_config")
    # the default budget {"like": r=8 on q, v}: as many active parameters as that LoRA trains
    assert ctl.config.active_params == 6 * 2 * 8 * (384 + 384)
    assert ctl.config.proxy == "rank_energy" and ctl.config.seed == 4 and ctl.config.mode == "lora"
    assert len(ctl.units) == 36 and {u.rank for u in ctl.units} == {4}  # DEFAULT_RANK (docs/quality.md, arm 8)
    assert callback.tokenizer is not None and len(ctl.batches) == 1 and "labels" in ctl.batches[0]
    chosen = ctl.reallocate(0)
    assert 0 < ctl.active_params <= 73_728 and chosen

    _, callback = heterolora.dynamic.attach(
        "minilm", ROWS, budget={"fraction": 0.25, "rank": 4}, num_batches=1, device="cpu", realloc_every=3
    )
    ctl = callback.controller
    assert ctl.config.active_fraction == 0.25 and ctl.config.active_params is None and ctl.interval == 3
    assert {u.rank for u in ctl.units} == {4}
    assert len(ctl.reallocate(0)) == 9  # floor(0.25 * 36)


def test_a_loaded_model_needs_its_tokenizer() -> None:
    from conftest import tiny_model

    with pytest.raises(ConfigError, match="tokenizer") as exc:
        heterolora.dynamic.attach(tiny_model("bert"), ROWS)
    assert exc.value.field == "tokenizer"
