"""What a proxy sees: the model, the scoring batches and the candidate sites, plus the shared
gradient pass that most proxies read from."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from heterolora.config import DEFAULT_SKETCH_OVERSAMPLING
from heterolora.search_space import Candidate, weight_of
from heterolora.sketch import DenseSite, Sketches, groups_under, site_devices, stream

Progress = Callable[[float, str], None]
# A proxy returns one score per candidate name, or a value curve (one value per rank in ctx.ranks,
# non-decreasing) when it can say what each extra rank is worth.
Scores = dict[str, float] | dict[str, list[float]]
ScoringMode = Literal["exact", "stream"]
Loss = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass
class ProxyContext:
    model: nn.Module
    batches: list[dict[str, torch.Tensor]]
    candidates: list[Candidate]
    ranks: list[int]
    seed: int = 0
    progress: Progress = _no_progress
    # Weight a proxy multiplies gradients with (SNIP, SynFlow). LoRA sites: the base weight.
    # Shortcut sites (implicit identity/zero base) plug in their own reference.
    reference_weight: Callable[[nn.Module, Candidate], torch.Tensor] | None = None
    # "exact": one shared pass keeps every site's dense gradient (the reference). "stream": no base
    # `.grad`; gradient proxies read low-rank sketches (`sketches`) or, where they need G element-wise,
    # dense gradients a group of sites at a time (`grad_groups`), each group under `memory_cap_bytes`.
    scoring: ScoringMode = "exact"
    memory_cap_bytes: int = 1 << 30
    checkpointing: bool = False  # gradient checkpointing during the streamed passes
    oversampling: int = DEFAULT_SKETCH_OVERSAMPLING  # sketch width k = oversampling·max(ranks) + 1
    passes: int = 0  # passes over the K batches that scoring took (recorded in the plan)
    # Distributed planning (heterolora/distributed.py): `batches` is this rank's shard of
    # `total_batches`, and `reduce` sums accumulators over the ranks in place.
    reduce: Callable[[list[torch.Tensor]], None] | None = None
    total_batches: int | None = None
    _grads: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _sketches: Sketches | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def weight(self, cand: Candidate) -> torch.Tensor:
        """Reference weight of a site as (d_out, d_in)."""
        if self.reference_weight is not None:
            return self.reference_weight(self.model, cand)
        return weight_of(self.model, cand)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def weight_grads(self) -> dict[str, torch.Tensor]:
        """Sum over the K batches of dL/dW for every candidate site, as (d_out, d_in) float32.
        Computed once and shared by every gradient proxy."""
        if self._grads is None:
            self._grads = accumulate_grads(self)
            self._sum(list(self._grads.values()))
            self.passes += 1
        return self._grads

    def sketches(self) -> Sketches:
        """Streaming low-rank sketches of every site's accumulated gradient, for the top
        `max(ranks)` singular values and vectors. One pass over the K batches, shared."""
        if self._sketches is None:
            devices = site_devices(self.model, self.candidates)
            self._sketches = Sketches(
                self.candidates,
                max(self.ranks),
                self.seed,
                self.device,
                oversampling=self.oversampling,
                devices=devices,
            )
            self._stream(self._sketches.sites)
            self._sum(self._sketches.accumulators())
        return self._sketches

    def grad_groups(
        self, batches: list[dict[str, torch.Tensor]] | None = None, loss: Loss | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Dense (d_out, d_in) float32 gradients of every site in stream mode, in groups of sites
        under the memory cap: one pass over `batches` (default: the scoring batches, task loss)
        per group. Exact mode yields `weight_grads()` once."""
        if self.scoring == "exact":
            yield self.weight_grads()
            return
        devices = site_devices(self.model, self.candidates)
        for group in groups_under(self.candidates, self.memory_cap_bytes):
            sites = {c.name: DenseSite(c.d_out, c.d_in, devices.get(c.name, self.device)) for c in group}
            self._stream(sites, batches, loss)
            if batches is None:  # the (sharded) scoring batches; a caller's own batches are whole
                self._sum([site.g for site in sites.values()])
            yield {name: site.g for name, site in sites.items()}

    def _stream(self, sites: dict, batches: list | None = None, loss: Loss | None = None) -> None:
        batches = [self.to_device(b) for b in (self.batches if batches is None else batches)]
        n, done = len(batches), self.passes

        def step(i: int) -> None:
            self.progress((i + 1) / n, f"scoring {i + 1}/{n}" + (f" (pass {done + 1})" if done else ""))

        stream(self.model, batches, sites, loss or self._loss, step, self.checkpointing)
        self.passes += 1

    @property
    def num_batches(self) -> int:
        """Scoring batches over all ranks (this process's `batches` in a single process)."""
        return len(self.batches) if self.total_batches is None else self.total_batches

    def _sum(self, tensors: list[torch.Tensor]) -> None:
        if self.reduce is not None:
            self.reduce(tensors)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch_loss(self.model, batch)


@contextmanager
def only_grad_for(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Eval mode, gradients only for `params`; restores flags, mode and .grad afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
        for p in params:
            p.requires_grad_(True)
        model.eval()  # no dropout: scores must not depend on dropout masks
        yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)


def batch_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    if out.loss is None:
        raise ValueError("the model returned no loss: the batch has no labels")
    return out.loss


def accumulate_grads(ctx: ProxyContext) -> dict[str, torch.Tensor]:
    weights = {c.name: ctx.model.get_submodule(c.name).weight for c in ctx.candidates}
    params = list({id(w): w for w in weights.values()}.values())
    with only_grad_for(ctx.model, params):
        for i, batch in enumerate(ctx.batches):
            batch_loss(ctx.model, ctx.to_device(batch)).backward()  # .grad sums over batches
            ctx.progress((i + 1) / len(ctx.batches), f"scoring {i + 1}/{len(ctx.batches)}")
        grads = {}
        for c in ctx.candidates:
            g = weights[c.name].grad
            g = torch.zeros_like(weights[c.name]) if g is None else g
            # No copy: only_grad_for drops .grad afterwards, so the buffer is ours (.float() copies
            # only half-precision grads). A clone here doubled peak memory for nothing.
            grads[c.name] = (g.t() if c.conv1d else g).detach().float()
    return grads
