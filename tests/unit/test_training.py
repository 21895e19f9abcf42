"""The plan's training section (heterolora/training.py), make_optimizer, the data-chosen init step
(heterolora/init/step.py) and the new options' validation."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_batches, tiny_model

from heterolora import AllocationConfig, apply_plan, compute_plan
from heterolora.init.step import candidate_steps
from heterolora.optim import make_optimizer
from heterolora.plans import SCHEMA_VERSION, Plan
from heterolora.training import TrainingInfo

BUDGET = {"like": {"r": 2}}


def _plan(**options: object) -> Plan:
    return compute_plan(tiny_model("bert"), random_batches(n=2), AllocationConfig(budget=BUDGET, **options))


def test_plan_carries_its_training_section() -> None:
    plan = _plan(learning_rate=5e-4, lora_plus_ratio=4, use_rslora=True)
    assert plan.schema_version == SCHEMA_VERSION == "1.3"
    assert plan.training == TrainingInfo(
        learning_rate=5e-4, lora_plus_ratio=4, alpha_mode="rslora", init="zero", head_warmup_steps=0
    )
    assert plan.recommended_learning_rate == 5e-4
    default = _plan().training  # the MRPC hold-out's pick for the plan's ranks (docs/quality.md)
    assert (default.learning_rate, default.lora_plus_ratio, default.alpha_mode) == (1e-3, 4.0, "rslora")
    earlier = _plan(use_rslora=False, lora_plus_ratio=1).training
    assert (earlier.lora_plus_ratio, earlier.alpha_mode) == (1.0, "constant_ratio")
    assert "training: lr 0.0005, LoRA+ ratio 4, alpha rslora, init zero" in plan.table()


def test_make_optimizer_puts_b_at_ratio_times_the_a_rate() -> None:
    plan = _plan(learning_rate=5e-4, lora_plus_ratio=4)
    model = apply_plan(tiny_model("bert"), plan)
    optimizer = make_optimizer(model)  # the plan apply_plan attached
    rate_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    a = [n for n in names if "lora_A" in n]
    b = [n for n in names if "lora_B" in n]
    assert a and b and len(a) == len(b) == len(plan.ranks)
    assert {rate_of[id(names[n])] for n in a} == {5e-4} and {rate_of[id(names[n])] for n in b} == {2e-3}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == set(rate_of)  # every trainable parameter is in exactly one group
    assert {g["weight_decay"] for g in optimizer.param_groups if g["params"]} <= {0.01, 0.0}
    over = make_optimizer(model, plan, lora_plus_ratio=16)
    assert max(g["lr"] for g in over.param_groups) == pytest.approx(8e-3)
    with pytest.raises(ValueError):
        make_optimizer(model, plan, lora_plus_ratio=0.5)


def test_a_schema_1_1_plan_still_loads(tmp_path) -> None:
    data = json.loads(_plan().to_json())
    for key in ("training", "init"):
        data.pop(key, None)
    data["schema_version"] = "1.1"
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = Plan.load(tmp_path / "old.json")
    assert old.schema_version == "1.1" and old.training is None and old.ranks
    model = apply_plan(tiny_model("bert"), old)
    optimizer = make_optimizer(model)  # no training section: plain AdamW at the default rate
    assert {g["lr"] for g in optimizer.param_groups if g["params"]} == {1e-3}


def test_init_step_is_chosen_from_data_and_deterministic() -> None:
    steps = candidate_steps()
    assert (
        steps[0] == 1.0 and steps[1] == pytest.approx(0.8) and len(steps) == 52 and steps[-1] >= 1e-5 > steps[-1] * 0.8
    )
    one = _plan(init="gradient", init_variant="gora", seed=3)
    two = _plan(init="gradient", init_variant="gora", seed=3)
    t = one.training
    assert t.init == "gradient" and t.init_step_rule == "line_search" and t.init_step is not None
    assert t.init_step == 0 or t.init_step in steps
    assert two.training == t and (one.init is None) == (two.init is None)
    if one.init is not None:
        assert one.init.sha256 == two.init.sha256 and one.init.recommended_learning_rate == 1e-3
    fixed = _plan(init="gradient", init_variant="gora", init_step="learning_rate", learning_rate=2e-4)
    assert fixed.training.init_step == 2e-4 and fixed.training.init_step_rule == "learning_rate"


def test_line_search_keeps_the_lowest_loss_below_the_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loss that is a parabola in the step with its minimum at 0.3, the search keeps the
    candidate nearest 0.3; when every step raises the loss it keeps 0."""
    import heterolora.init.step as init_step

    model = torch.nn.Linear(2, 2)
    site_delta = {"value": 0.3}

    def loss(m: torch.nn.Module, batch: dict) -> torch.Tensor:
        step = float(m.weight[0, 0])  # the site's weight moves by step * delta, delta = 1 at [0, 0]
        return torch.tensor((step - site_delta["value"]) ** 2)

    monkeypatch.setattr(init_step, "batch_loss", loss)
    with torch.no_grad():
        model.weight.zero_()
    deltas = [(model.weight, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))]
    assert init_step.search(model, {}, deltas) == pytest.approx(min(candidate_steps(), key=lambda s: abs(s - 0.3)))
    assert float(model.weight[0, 0]) == 0.0  # the weights are restored
    site_delta["value"] = -1.0  # every positive step is worse than none
    assert init_step.search(model, {}, deltas) == 0.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lora_plus_ratio", 0.5),
        ("lora_plus_ratio", 1000),
        ("learning_rate", 0),
        ("learning_rate", 2),
        ("init_step", "guess"),
    ],
)
def test_bad_training_options_get_a_422_naming_the_field(field: str, value: object) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.settings import Settings, get_settings

    key = "k" * 16
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: Settings.model_validate(
        {"model_allowlist": "minilm", "api_keys": key}
    )
    body = {"model_id": "minilm", "samples": [{"text": "a", "label": 0}, {"text": "b", "label": 1}], field: value}
    with TestClient(app) as client:
        res = client.post("/allocate", json=body, headers={"Authorization": f"Bearer {key}"})
    assert res.status_code == 422, res.text
    assert res.json()["error"]["field"] == field and "Traceback" not in res.text


def test_lora_one_normalises_each_sites_first_update() -> None:
    """LoRA-One's rule: every site's first update scaling * B @ A has spectral norm scaling / 128."""
    from safetensors.torch import load

    from heterolora.init.format import adapter_key

    plan = _plan(init="gradient", init_variant="gora", init_step="lora_one", seed=1)
    assert plan.training.init_step_rule == "lora_one" and plan.training.init_step is None
    tensors = load(plan.init_data)
    adapted = [m for m in plan.lora_modules if m.rank]
    for m in adapted:
        b, a = tensors[adapter_key(m.name, "B")].double(), tensors[adapter_key(m.name, "A")].double()
        assert float(torch.linalg.matrix_norm(b @ a, ord=2)) == pytest.approx(1 / 128, rel=1e-4), m.name
    again = _plan(init="gradient", init_variant="gora", init_step="lora_one", seed=1)
    assert again.init.sha256 == plan.init.sha256 and len(adapted) > 1
