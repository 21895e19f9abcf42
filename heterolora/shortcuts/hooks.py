"""Attach shortcut modules to a model with forward hooks, and remove them again.

Data flow of layer i (x_i = layer input, f_i = FFN block input; docs/shortcuts.md has the diagram):

    attention sub-block output  += residual1(x_i) + shortcut_ffn(f_{i-1})
    FFN sub-block output        += residual2(f_i) + shortcut_sa(x_i)

The modules live in an nn.ModuleDict registered on each layer as `shortcuts`, so they move with
the layer (`.to`, device maps), appear in `named_parameters()` and in the model's state dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from heterolora.errors import PlanError
from heterolora.shortcuts.layout import Layout

CONTAINER = "shortcuts"
_ROUTER_ATTR = "_heterolora_shortcut_router"

# type -> (sub-block whose output receives the term, tensor the module reads, layer offset of it)
ROUTES: dict[str, tuple[str, str, int]] = {
    "residual1": ("attn", "x", 0),  # (I + sBA) on the attention block's residual branch
    "shortcut_ffn": ("attn", "f", -1),  # FFN input of layer i-1 -> attention output of layer i
    "residual2": ("ffn", "f", 0),  # (I + sBA) on the FFN block's residual branch
    "shortcut_sa": ("ffn", "x", 0),  # layer input -> FFN output (skips the whole layer)
}


def site_name(layout: Layout, layer: int, kind: str) -> str:
    """Full module name of a shortcut once attached, e.g. bert.encoder.layer.3.shortcuts.residual1."""
    return f"{layout.layers}.{layer}.{CONTAINER}.{kind}"


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, value: torch.Tensor) -> Any:
    return (value, *output[1:]) if isinstance(output, tuple) else value


class ShortcutRouter:
    """Owns the hooks of one model: records x_i and f_i as the forward pass reaches them and adds
    each layer's terms where its layout says."""

    def __init__(self, model: nn.Module, layout: Layout) -> None:
        self.layout = layout
        self.layers: nn.ModuleList = model.get_submodule(layout.layers)  # type: ignore[assignment]
        self.saved: dict[tuple[str, int], torch.Tensor] = {}
        self.handles: list[RemovableHandle] = []

    def modules(self, i: int) -> nn.ModuleDict:
        return getattr(self.layers[i], CONTAINER)

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Shortcut parameters keyed by their full names in the model."""
        return {
            f"{self.layout.layers}.{i}.{CONTAINER}.{name}": p
            for i in range(len(self.layers))
            for name, p in self.modules(i).named_parameters()
        }

    def add_terms(self, i: int, block: str, target: torch.Tensor) -> torch.Tensor:
        total = None
        for kind, module in self.modules(i).items():
            where, source, offset = ROUTES[kind]
            if where != block:
                continue
            try:
                u = self.saved[(source, i + offset)]
            except KeyError:
                raise RuntimeError(f"shortcut {kind} of layer {i} ran before its input was seen") from None
            term = module.term(u).reshape(target.shape).to(target.dtype)  # OPT flattens the FFN to (B*T, d)
            total = term if total is None else total + term
        return target if total is None else target + total

    def install(self) -> None:
        post = self.layout.placement == "post"
        for i, layer in enumerate(self.layers):
            attn = layer.get_submodule(self.layout.attn)
            ffn_norm = layer.get_submodule(self.layout.ffn_norm)
            hooks = [layer.register_forward_pre_hook(self._save_input(i), with_kwargs=True)]
            if post:  # add before each LayerNorm; the attention LN's output is the FFN input
                hooks.append(attn.register_forward_pre_hook(self._add_to_input(i, "attn")))
                hooks.append(attn.register_forward_hook(self._save_output(i)))
                hooks.append(ffn_norm.register_forward_pre_hook(self._add_to_input(i, "ffn")))
            else:  # add into the residual stream; the FFN LN's input is the stream entering the FFN
                # prepend: run before transformers' output-recording hooks, which then see the sum
                hooks.append(attn.register_forward_hook(self._add_to_output(i, "attn"), prepend=True))
                hooks.append(ffn_norm.register_forward_pre_hook(self._save_ffn_input(i)))
                hooks.append(layer.register_forward_hook(self._add_to_output(i, "ffn"), prepend=True))
            self.handles.extend(hooks)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.saved.clear()

    # ---- hook factories (one closure per layer index) -----------------------------------
    def _save_input(self, i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if i == 0:
                self.saved.clear()  # a new forward pass: drop the previous pass's tensors
            self.saved[("x", i)] = args[0] if args else kwargs["hidden_states"]

        return hook

    def _save_output(self, i: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.saved[("f", i)] = output

        return hook

    def _save_ffn_input(self, i: int):
        def hook(module: nn.Module, args: tuple) -> None:
            self.saved[("f", i)] = args[0]

        return hook

    def _add_to_input(self, i: int, block: str):
        def hook(module: nn.Module, args: tuple) -> tuple:
            return (self.add_terms(i, block, args[0]), *args[1:])

        return hook

    def _add_to_output(self, i: int, block: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            return _replace_first(output, self.add_terms(i, block, _first(output)))

        return hook


def install(model: nn.Module, layout: Layout, modules: dict[int, dict[str, nn.Module]]) -> ShortcutRouter:
    """Register `modules` ({layer: {type: module}}) on their layers and hook them in."""
    if get_router(model) is not None:
        raise PlanError("this model already has shortcuts attached; remove them first", field="plan")
    router = ShortcutRouter(model, layout)
    for i, layer in enumerate(router.layers):
        if hasattr(layer, CONTAINER):
            raise PlanError(f"layer {i} already has an attribute {CONTAINER!r}", field="plan")
        bad = sorted(set(modules.get(i, {})) - set(ROUTES))
        if bad or (i == 0 and "shortcut_ffn" in modules.get(i, {})):
            raise PlanError(f"invalid shortcut types for layer {i}: {bad or ['shortcut_ffn']}", field="plan")
        layer.add_module(CONTAINER, nn.ModuleDict(modules.get(i, {})))
    router.install()
    object.__setattr__(model, _ROUTER_ATTR, router)  # a plain attribute, not a registered module
    return router


def get_router(model: nn.Module) -> ShortcutRouter | None:
    return getattr(model, _ROUTER_ATTR, None)


def remove_shortcuts(model: nn.Module) -> None:
    """Remove hooks and modules: the model computes exactly what it did before `install`."""
    router = get_router(model)
    if router is None:
        return
    router.remove()
    for layer in router.layers:
        delattr(layer, CONTAINER)
    object.__delattr__(model, _ROUTER_ATTR)


def shortcut_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Shortcut parameters keyed by their full names in `model` (detached copies)."""
    router = get_router(model)
    return {} if router is None else {n: p.detach().clone() for n, p in router.named_parameters().items()}
