"""Gradient init carried by the plan (issue 14): exact A/B after apply_plan, the documented step-0
function, byte-identical artifacts, refusal of tampered files, the learning-rate warning."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import random_batches, tiny_model
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load

from heterolora.apply import apply_plan, load_adapted, save_adapted
from heterolora.config import AllocationConfig
from heterolora.engine import compute_plan
from heterolora.errors import PlanError
from heterolora.init.apply import LearningRateWarning, check_optimizer
from heterolora.init.format import adapter_key
from heterolora.plans import Plan
from heterolora.proxies.context import ProxyContext
from heterolora.search_space import discover

CASES = [("llama", "seq-cls"), ("gpt2", "seq-cls"), ("bert", "seq-cls"), ("llama", "causal-lm"), ("gpt2", "causal-lm")]


def _plan(arch: str, task: str = "seq-cls", **cfg) -> tuple[Plan, list[dict[str, torch.Tensor]]]:
    batches = random_batches(labels=None if task == "causal-lm" else 2)
    options = {"budget": {"trainable_params": 3000}, "rank_set": [2, 4, 8], "init": "gradient"}
    options |= {"init_variant": "lora_ga"} | cfg  # tests name their variant; the default is tested apart
    plan = compute_plan(tiny_model(arch, task), batches, AllocationConfig(task=task, **options))
    return plan, batches


def _outputs(model, batches) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return [model(**{k: v for k, v in b.items() if k != "labels"}).logits for b in batches]


def _assert_factors_equal_file(peft_model, plan: Plan) -> None:
    tensors = load(plan.init_data)
    names = [m.name for m in plan.lora_modules if m.rank > 0]
    assert set(tensors) == {adapter_key(n, f) for n in names for f in "AB"}
    base = peft_model.get_base_model()
    for name in names:
        layer = base.get_submodule(name)
        assert torch.equal(layer.lora_A["default"].weight, tensors[adapter_key(name, "A")])
        assert torch.equal(layer.lora_B["default"].weight, tensors[adapter_key(name, "B")])
        assert tensors[adapter_key(name, "B")].abs().max() > 0  # not the zero init


@pytest.mark.parametrize(("arch", "task"), CASES)
def test_lora_ga_factors_equal_the_file_and_the_function_is_unchanged(arch: str, task: str) -> None:
    plan, batches = _plan(arch, task)
    assert plan.init is not None and plan.init.variant == "lora_ga" and plan.init.base_correction
    assert plan.init.modules == len(plan.ranks) and plan.recommended_learning_rate == 1e-3
    before = _outputs(tiny_model(arch, task), batches)
    peft_model = apply_plan(tiny_model(arch, task), plan, learning_rate=1e-3)
    _assert_factors_equal_file(peft_model, plan)
    after = _outputs(peft_model, batches)
    for x, y in zip(before, after, strict=True):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    # The correction really happened: the adapter alone changes the output.
    with peft_model.disable_adapter():
        shifted = _outputs(peft_model, batches)
    assert max((s - x).abs().max().item() for s, x in zip(shifted, before, strict=True)) > 1e-7


def _mean_grads(arch: str, task: str, batches) -> dict[str, torch.Tensor]:
    model = tiny_model(arch, task)
    sites = discover(model)
    return {n: g / len(batches) for n, g in ProxyContext(model, batches, sites, [1]).weight_grads().items()}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_gora_step0_is_one_projected_gradient_step(arch: str) -> None:
    """Documented change: W_eff = W - lr * sqrt(d_in / r) * Ḡ A⁺A, base weights untouched."""
    lr = 0.05
    # Rank 16 only: the factors keep 2 * 16 = 32 = all singular triplets of these d=32 sites (Ḡ is
    # G's top 2r, docs/plan-format.md), so the file must match the exact gradient.
    plan, batches = _plan(arch, init_variant="gora", learning_rate=lr, init_step="learning_rate", rank_set=[16])
    assert plan.init.variant == "gora" and not plan.init.base_correction
    peft_model = apply_plan(tiny_model(arch), plan, learning_rate=lr)
    _assert_factors_equal_file(peft_model, plan)
    grads, tensors = _mean_grads(arch, "seq-cls", batches), load(plan.init_data)
    expected = tiny_model(arch)
    conv1d = {c.name for c in discover(expected) if c.conv1d}
    with torch.no_grad():
        for m in plan.lora_modules:
            if not m.rank:
                continue
            a = tensors[adapter_key(m.name, "A")].double()
            step = -lr * math.sqrt(m.d_in / m.rank) * grads[m.name].double() @ torch.linalg.pinv(a) @ a
            w = expected.get_submodule(m.name).weight
            w += (step.T if m.name in conv1d else step).to(w.dtype)
    got, want = _outputs(peft_model, batches), _outputs(expected, batches)
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    untouched = _outputs(tiny_model(arch), batches)
    assert max((x - b).abs().max().item() for x, b in zip(got, untouched, strict=True)) > 1e-5  # it did move


def test_same_request_and_seed_give_a_byte_identical_artifact() -> None:
    for variant in ("lora_ga", "gora"):
        one, _ = _plan("llama", init_variant=variant)
        two, _ = _plan("llama", init_variant=variant)
        assert one.init_data == two.init_data and one.init == two.init
        assert one.fingerprint() == two.fingerprint()
    other, _ = _plan("llama", init_variant="gora", seed=1)
    assert other.init.sha256 != one.init.sha256  # the seed draws another random A (and sample)


def test_default_gradient_init_is_gora_at_the_standard_lora_rate() -> None:
    """The default variant and rate (docs/plan-format.md: chosen on the MRPC train hold-out)."""
    config = AllocationConfig(budget={"trainable_params": 3000}, rank_set=[2, 4, 8], init="gradient")
    plan = compute_plan(tiny_model("llama"), random_batches(), config)
    assert plan.init.variant == "gora" and not plan.init.base_correction
    assert plan.recommended_learning_rate == 1e-3  # the round-3 hold-out sweep's pick (docs/plan-format.md)
    assert AllocationConfig().init == "zero"  # the product default stays standard LoRA


def test_save_load_roundtrip_and_tampered_files_are_refused(tmp_path) -> None:
    plan, _ = _plan("gpt2")
    path = plan.save(tmp_path / "plan.json")
    assert (tmp_path / "plan.safetensors").read_bytes() == plan.init_data
    loaded = Plan.load(path)
    assert loaded.init_data == plan.init_data and loaded.init.file == "plan.safetensors"
    assert loaded.fingerprint() == plan.fingerprint()
    data = bytearray(plan.init_data)
    data[-1] ^= 1
    (tmp_path / "plan.safetensors").write_bytes(bytes(data))
    with pytest.raises(PlanError, match="does not match the plan") as err:
        Plan.load(path)
    assert err.value.field == "init.sha256"
    with pytest.raises(PlanError, match="bytes, the plan says"):
        Plan.from_dict(plan.model_dump()).attach_init_data(plan.init_data + b"x")
    (tmp_path / "plan.safetensors").unlink()
    with pytest.raises(PlanError, match="missing"):
        Plan.load(path)
    with pytest.raises(PlanError, match="no tensors"):
        apply_plan(tiny_model("gpt2"), Plan.from_dict(plan.model_dump()))


def test_plain_peft_loads_the_file_unchanged() -> None:
    plan, _ = _plan("llama", "causal-lm")  # no task head: the file is the whole adapter
    peft_model = get_peft_model(tiny_model("llama", "causal-lm"), plan.to_lora_config())
    result = set_peft_model_state_dict(peft_model, load(plan.init_data))
    assert not result.unexpected_keys
    _assert_factors_equal_file(peft_model, plan)
    # With a trained head (modules_to_save) PEFT wants the head's keys too: add the file to the
    # model's own state dict (docs/plan-format.md).
    plan, _ = _plan("llama")
    peft_model = get_peft_model(tiny_model("llama"), plan.to_lora_config())
    state = get_peft_model_state_dict(peft_model) | load(plan.init_data)
    assert not set_peft_model_state_dict(peft_model, state).unexpected_keys
    _assert_factors_equal_file(peft_model, plan)


def test_learning_rate_disagreement_warns(recwarn) -> None:
    plan, _ = _plan("llama")
    with pytest.warns(LearningRateWarning, match="built for learning rate 0.001"):
        apply_plan(tiny_model("llama"), plan)
    with pytest.warns(LearningRateWarning, match="differs from the 0.001"):
        apply_plan(tiny_model("llama"), plan, learning_rate=3e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LearningRateWarning)
        peft_model = apply_plan(tiny_model("llama"), plan, learning_rate=1e-3)
        assert check_optimizer(torch.optim.AdamW(peft_model.parameters(), lr=1e-3), peft_model)
    with pytest.warns(LearningRateWarning):
        assert not check_optimizer(torch.optim.AdamW(peft_model.parameters(), lr=1e-2), plan)


def test_saved_adapter_reloads_on_the_corrected_base(tmp_path) -> None:
    plan, batches = _plan("bert")
    peft_model = apply_plan(tiny_model("bert"), plan, learning_rate=1e-3)
    with torch.no_grad():  # stand-in for training: move B
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)
    want = _outputs(peft_model, batches)
    save_adapted(peft_model, tmp_path / "adapter")
    again = load_adapted(tiny_model("bert"), tmp_path / "adapter")
    for x, y in zip(_outputs(again, batches), want, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_scores_without_gradients_cannot_make_a_gradient_init() -> None:
    from heterolora.errors import ConfigError
    from heterolora.scoring import score_sites
    from heterolora.sites import discover_space

    model, batches = tiny_model("llama"), random_batches()
    zero = AllocationConfig(budget={"trainable_params": 3000}, rank_set=[2, 4, 8])
    scored = score_sites(model, batches, zero, lambda f, m: None, discover_space(model, zero))
    assert scored.gradients is None
    with pytest.raises(ConfigError, match="without init='gradient'") as err:
        compute_plan(model, batches, zero.model_copy(update={"init": "gradient"}), scored=scored)
    assert err.value.field == "init"


@pytest.mark.parametrize("variant", ["gora", "lora_ga"])
def test_streamed_init_comes_from_the_sketches_and_matches_the_exact_one(variant: str, monkeypatch) -> None:
    """scoring="stream" builds the init from the scoring sketches: no dense dL/dW is ever formed
    (weight_grads is made to fail), still one pass over the batches. With 8 tokens the summed gradient
    has rank <= 8 < k = 2 * 4 + 1, where a range/co-range sketch is exact (Tropp et al. 2017), so the
    streamed A and B equal the exact path's up to float error on sites that really are sketched."""
    from heterolora.sketch import SketchedSite, Sketches

    batches = random_batches(n=1, batch=1, seq=8)
    options = {"budget": {"trainable_params": 1500}, "rank_set": [2, 4], "init": "gradient", "init_variant": variant}
    exact = compute_plan(tiny_model("llama"), batches, AllocationConfig(scoring="exact", **options))

    def no_dense(self):
        raise AssertionError("stream mode formed dense gradients")

    monkeypatch.setattr(ProxyContext, "weight_grads", no_dense)
    streamed = compute_plan(tiny_model("llama"), batches, AllocationConfig(scoring="stream", **options))
    assert streamed.settings["scoring_mode"] == "stream" and streamed.settings["scoring_passes"] == 1
    sites = Sketches(discover(tiny_model("llama")), 4, 0, torch.device("cpu")).sites.values()
    assert sum(isinstance(s, SketchedSite) for s in sites) == 10  # q, o, gate, up, down; k and v (16 x 32) stay dense
    assert streamed.ranks == exact.ranks
    want, got = load(exact.init_data), load(streamed.init_data)
    assert set(got) == set(want)
    updates = {n: want[adapter_key(n, "B")] @ want[adapter_key(n, "A")] for n in streamed.ranks}
    tol = 1e-4 * max(float(u.abs().max()) for u in updates.values())
    for name in streamed.ranks:
        a, b = adapter_key(name, "A"), adapter_key(name, "B")
        if variant == "gora":  # A is seeded noise, B = -step * G_2r A+: both well defined
            assert torch.equal(got[a], want[a])
            torch.testing.assert_close(got[b], want[b], atol=1e-5 * want[b].abs().max(), rtol=0)
        # LoRA-GA's singular vectors past G's rank (1 for the last layer's MLP here) are arbitrary;
        # the update B @ A that the base absorbs is not
        torch.testing.assert_close(got[b] @ got[a], updates[name], atol=tol, rtol=0)
