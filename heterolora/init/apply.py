"""Put a plan's gradient init into a PeftModel, correct the base weights where the variant needs
it, check the result, and warn when the training learning rate disagrees with the plan's."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from heterolora.errors import PlanError
from heterolora.init.format import InitInfo, adapter_key, verify_artifact
from heterolora.plans import Plan, plan_of

ADAPTER = "default"
LR_TOLERANCE = 0.01  # relative: 1e-3 vs 1.001e-3 is the same learning rate


class LearningRateWarning(UserWarning):
    """The optimizer's learning rate differs from the one the plan's init was built for."""


def _lora_layers(peft_model: Any, names: list[str]) -> dict[str, Any]:
    base = peft_model.get_base_model()
    layers = {}
    for name in names:
        layer = base.get_submodule(name)
        if not hasattr(layer, "lora_A") or ADAPTER not in layer.lora_A:
            raise PlanError(f"module {name} has no LoRA adapter {ADAPTER!r}", field="plan")
        layers[name] = layer
    return layers


def _load(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


def _module_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    names = sorted({k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in tensors})
    expected = {adapter_key(n, f) for n in names for f in ("A", "B")}
    if expected != set(tensors):
        raise PlanError("init tensor file is not in PEFT's adapter key layout", field="init")
    return names


def apply_init_artifact(
    peft_model: Any, info: InitInfo, data: bytes, expected_scaling: dict[str, float] | None = None
) -> None:
    """Copy A and B from the tensor file into every LoRA module it names, subtract scaling * B @ A
    from the base weights when `info.base_correction`, then check every factor equals the file."""
    tensors = _load(verify_artifact(data, info))
    names = _module_names(tensors)
    if len(names) != info.modules:
        raise PlanError(f"init tensor file holds {len(names)} modules, the plan says {info.modules}", field="init")
    layers = _lora_layers(peft_model, names)
    with torch.no_grad():
        for name, layer in layers.items():
            scaling = float(layer.scaling[ADAPTER])
            want = (expected_scaling or {}).get(name)
            if want is not None and not math.isclose(scaling, want, rel_tol=1e-6):
                raise PlanError(
                    f"{name}: PEFT scaling {scaling} differs from the plan's {want}; the init was built for "
                    "the plan's lora_alpha, do not override it",
                    field="init",
                )
            for factor, module in (("A", layer.lora_A[ADAPTER]), ("B", layer.lora_B[ADAPTER])):
                src = tensors[adapter_key(name, factor)]
                if tuple(module.weight.shape) != tuple(src.shape):
                    raise PlanError(
                        f"{name}.lora_{factor}: shape {tuple(src.shape)} in the init file, "
                        f"{tuple(module.weight.shape)} in the model",
                        field="init",
                    )
                module.weight.copy_(src)
    if info.base_correction:
        correct_base(peft_model, tensors, layers)
    verify_init(peft_model, tensors)


def correct_base(peft_model: Any, tensors: dict[str, torch.Tensor], layers: dict[str, Any] | None = None) -> None:
    """W <- W - scaling * B0 @ A0 for every module in `tensors` (the initial factors), in float32,
    stored back in W's layout (Conv1D keeps W as (d_in, d_out)) and dtype."""
    layers = layers if layers is not None else _lora_layers(peft_model, _module_names(tensors))
    with torch.no_grad():
        for name, layer in layers.items():
            weight = layer.get_base_layer().weight
            a = tensors[adapter_key(name, "A")].to(weight.device, torch.float32)
            b = tensors[adapter_key(name, "B")].to(weight.device, torch.float32)
            delta = float(layer.scaling[ADAPTER]) * (b @ a)  # (d_out, d_in)
            if getattr(layer, "fan_in_fan_out", False):
                delta = delta.T
            weight.copy_((weight.float() - delta).to(weight.dtype))


def verify_init(peft_model: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Raise PlanError unless every LoRA A and B named in `tensors` equals it exactly."""
    layers = _lora_layers(peft_model, _module_names(tensors))
    for name, layer in layers.items():
        for factor, module in (("A", layer.lora_A[ADAPTER]), ("B", layer.lora_B[ADAPTER])):
            src = tensors[adapter_key(name, factor)].to(module.weight.device, module.weight.dtype)
            if not torch.equal(module.weight.detach(), src):
                raise PlanError(f"{name}.lora_{factor} differs from the plan's init tensors", field="init")


def apply_init(peft_model: Any, plan: Plan) -> None:
    """apply_init_artifact for a plan: its tensor file, its modules and their planned scaling."""
    if plan.init is None:
        return
    if plan.init_data is None:
        raise PlanError(
            "the plan has an init section but no tensors: use Plan.load(path) (reads the .safetensors "
            "next to the JSON) or the client's plan(), which downloads them",
            field="init",
        )
    from heterolora.init.build import plan_sites

    expected = {s.name: s.scaling for s in plan_sites(plan)}
    apply_init_artifact(peft_model, plan.init, plan.init_data, expected)


def check_learning_rate(learning_rate: float | None, plan: Plan, *, stacklevel: int = 2) -> bool:
    """Warn (LearningRateWarning) and return False when `learning_rate` is not the plan's
    recommended one. A plan without a recommendation accepts any rate."""
    want = plan.recommended_learning_rate
    if want is None:
        return True
    if learning_rate is None:
        warnings.warn(
            f"this plan's {plan.init.variant if plan.init else ''} init was built for learning rate {want:g} "
            "(plan.recommended_learning_rate); an init tuned for one rate can diverge at another. "
            "Pass learning_rate= to apply_plan, or call heterolora.check_optimizer(optimizer, plan).",
            LearningRateWarning,
            stacklevel=stacklevel + 1,
        )
        return False
    if math.isclose(learning_rate, want, rel_tol=LR_TOLERANCE):
        return True
    warnings.warn(
        f"learning rate {learning_rate:g} differs from the {want:g} this plan's init was built for "
        "(plan.recommended_learning_rate): PEFT's lora_ga init collapsed to the majority class at 3x its "
        "rate on MRPC. Train at the recommended rate, or plan again with learning_rate=",
        LearningRateWarning,
        stacklevel=stacklevel + 1,
    )
    return False


def check_optimizer(optimizer: Any, plan_or_model: Any) -> bool:
    """Warn (LearningRateWarning) and return False unless every param group's lr of `optimizer`
    matches the plan's recommended learning rate. Accepts a Plan or a model from apply_plan."""
    plan = plan_or_model if isinstance(plan_or_model, Plan) else plan_of(plan_or_model)
    rates = sorted({float(g["lr"]) for g in optimizer.param_groups})
    ok = [check_learning_rate(lr, plan, stacklevel=2) for lr in rates]
    return all(ok)
