"""Budget forms, option validation and the plan's PEFT contract (no model needed)."""

from __future__ import annotations

import re

import pytest

from heterolora.config import PROXY_NAMES, AllocationConfig, FractionBudget, LikeBudget, ParamsBudget, parse_budget
from heterolora.errors import ConfigError
from heterolora.plans import BudgetInfo, ModelInfo, ModuleEntry, Plan, build_peft_kwargs, pattern_key
from heterolora.proxies import PROXIES, register_proxy


def test_three_budget_forms_parse() -> None:
    assert parse_budget({"trainable_params": 5}) == ParamsBudget(trainable_params=5)
    assert parse_budget({"like": {"r": 4, "types": ["q", "v", "up"]}}).like.types == ["q", "v", "up"]
    assert parse_budget({"fraction": 0.25, "rank": 8}) == FractionBudget(fraction=0.25, rank=8)
    assert parse_budget(None) == LikeBudget(like={"r": 8, "types": ["q", "v"]})


@pytest.mark.parametrize(
    "bad", [{"trainable_params": 0}, {"fraction": 1.5}, {"like": {"r": 8, "types": ["zz"]}}, {"oops": 1}, 7]
)
def test_bad_budgets_name_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_budget(bad)  # type: ignore[arg-type]
    assert err.value.field == "budget"


def test_config_rejects_unknown_fields_and_types() -> None:
    with pytest.raises(ValueError):
        AllocationConfig(nope=1)
    with pytest.raises(ValueError):
        AllocationConfig(types=["q", "zz"])
    with pytest.raises(ConfigError, match="max_rank"):
        AllocationConfig(rank_set=[8, 16], max_rank=4).effective_ranks()
    assert AllocationConfig(rank_set=[16, 2, 2], max_rank=8).effective_ranks() == [2]


def test_proxy_names_match_the_registry() -> None:
    assert set(PROXY_NAMES) == set(PROXIES)


def test_registry_validates_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_proxy("grad_norm", needs_labels=True)(lambda ctx: {})
    with pytest.raises(ValueError, match="snake_case"):
        register_proxy("Bad-Name", needs_labels=True)(lambda ctx: {})

    def other(ctx):
        return {}

    with pytest.raises(ValueError, match="must be named like its key"):
        register_proxy("not_other", needs_labels=False)(other)
    assert "not_other" not in PROXIES


def _entry(name: str, rank: int) -> ModuleEntry:
    return ModuleEntry(
        name=name, type="q", layer=0, rank=rank, alpha=2.0 * rank, score=1.0, params=rank * 64, d_in=32, d_out=32
    )


def test_peft_kwargs_use_exact_anchored_keys() -> None:
    mods = [_entry("model.layers.1.q_proj", 8), _entry("model.layers.10.q_proj", 4), _entry("x.q", 0)]
    kw = build_peft_kwargs(mods, use_rslora=False)
    assert kw.target_modules == ["model.layers.1.q_proj", "model.layers.10.q_proj"]
    assert kw.rank_pattern == {r"^model\.layers\.1\.q_proj": 8, r"^model\.layers\.10\.q_proj": 4}
    assert kw.alpha_pattern == {r"^model\.layers\.1\.q_proj": 16.0, r"^model\.layers\.10\.q_proj": 8.0}
    # PEFT's lookup is re.match(rf"(.*\.)?({key})$", name): each key matches its module only.
    for key in kw.rank_pattern:
        hits = [m.name for m in mods if re.match(rf"(.*\.)?({key})$", m.name)]
        assert len(hits) == 1
    assert pattern_key("a.b") == r"^a\.b"


def test_plan_round_trips_through_json(tmp_path) -> None:
    mods = [_entry("m.q", 8)]
    plan = Plan(
        model=ModelInfo(id="x", architecture="X", model_type="bert", num_layers=1),
        task="seq-cls",
        proxy="grad_norm",
        seed=0,
        budget=BudgetInfo(kind="trainable_params", request={"trainable_params": 600}, limit=600, used=512),
        modules=mods,
        peft=build_peft_kwargs(mods, use_rslora=False),
    )
    path = plan.save(tmp_path / "p.json")
    assert Plan.load(path) == plan
    assert plan.to_lora_config().rank_pattern == {r"^m\.q": 8}


def test_a_schema_1_0_plan_without_labels_still_loads() -> None:
    from heterolora.plans import SCHEMA_VERSION, Plan

    old = {
        "schema_version": "1.0",
        "model": {"id": "m", "architecture": "BertModel", "model_type": "bert", "num_layers": 1},
        "task": "seq-cls",
        "proxy": "grad_norm",
        "seed": 0,
        "budget": {"kind": "like", "request": {}, "limit": 1, "used": 0},
        "modules": [],
        "peft": {"r": 8, "lora_alpha": 16, "target_modules": [], "rank_pattern": {}, "alpha_pattern": {}},
    }
    plan = Plan.from_dict(old)
    assert plan.labels is None and plan.schema_version == "1.0" and SCHEMA_VERSION == "1.3"
