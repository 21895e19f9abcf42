"""Gradient-aligned LoRA initialisation: from each site's accumulated gradient to LoRA A and B.

Two variants (docs/plan-format.md, "Initialisation"):
- `lora_ga` (LoRA-GA, arXiv 2407.05000, as PEFT's `init_lora_weights="lora_ga"` with direction ArB2r
  and scale "stable"): A = top-r right singular vectors of the mean gradient Ḡ, B = the next r left
  singular vectors times their singular values times d_out**0.25 / sqrt(gamma). The SDK subtracts
  scaling * B @ A from the frozen base weight, so the model's function at step 0 is unchanged.
- `gora` (GoRA-like, arXiv 2502.12171): A random (seeded, nn.Linear's init), and
  B = -(lr * sqrt(d_in / r) / scaling) * Ḡ A⁺ with Ḡ the best rank-2r approximation of the mean
  gradient (what a sketch provides), so scaling * B @ A = -lr * sqrt(d_in / r) * Ḡ P_A:
  one gradient step of size lr restricted to A's row space (sqrt(d_in / r) restores the norm the
  projection removes). The base stays untouched; the step-0 function changes by exactly that step.

The factors come from the scoring pass itself (no second backward pass for a gradient proxy),
through a `GradientSource`: in exact mode a seeded randomized SVD of the dense accumulated gradients
(`gradient_factors`), in stream mode the top singular triplets of the low-rank sketches
(heterolora/sketch.py), so a streamed plan never holds a dense base-weight gradient for its init.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from heterolora.config import AllocationConfig
from heterolora.init.format import (
    DEFAULT_INIT_VARIANT,
    DEFAULT_LEARNING_RATE,
    LORA_GA_GAMMA,
    InitInfo,
    InitVariant,
    adapter_key,
    sha256_hex,
)
from heterolora.plans import ModuleEntry, Plan
from heterolora.proxies.context import ProxyContext
from heterolora.search_space import Candidate, discover
from heterolora.sketch import DenseSite, Sketches, resolve_scoring


@dataclass(frozen=True)
class SiteFactors:
    """Top-k singular triplets of a site's gradient summed over `num_batches` batches:
    G ≈ U diag(S) Vh with U (d_out, k), S (k,), Vh (k, d_in), float32 on the CPU."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    num_batches: int

    def truncated(self, k: int) -> SiteFactors:
        """The top `k` triplets (all of them when there are fewer)."""
        return SiteFactors(self.U[:, :k], self.S[:k], self.Vh[:k], self.num_batches)


@dataclass(frozen=True)
class InitArtifact:
    info: InitInfo
    data: bytes  # the safetensors file


def gradient_factors(
    grads: Mapping[str, torch.Tensor], ranks: Mapping[str, int], *, num_batches: int, seed: int = 0
) -> dict[str, SiteFactors]:
    """The top `ranks[name]` singular triplets of each (d_out, d_in) summed gradient in `ranks`.

    A seeded randomized SVD (torch.svd_lowrank with 2k columns and 4 power iterations, as PEFT's
    lora_ga uses) where 2k is below the smaller side, else the exact SVD. Signs are fixed (each
    column of U has its largest-magnitude entry positive), so the result depends on neither the
    LAPACK build's sign choice nor the global torch seed."""
    out = {}
    for name, k in ranks.items():
        g = grads[name].float()
        k = min(k, *g.shape)
        q = min(2 * k, *g.shape)
        if q == min(g.shape):
            u, s, vh = torch.linalg.svd(g, full_matrices=False)
        else:
            with torch.random.fork_rng(devices=[g.device] if g.is_cuda else []):
                torch.manual_seed(seed)
                u, s, v = torch.svd_lowrank(g, q=q, niter=4)
            vh = v.T
        out[name] = _canonical(u[:, :k], s[:k], vh[:k], num_batches)
    return out


def _canonical(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, num_batches: int) -> SiteFactors:
    """Fixed signs (each column of u has its largest-magnitude entry positive), float32 on the CPU."""
    pivot = u.abs().argmax(dim=0)
    sign = torch.sign(u[pivot, torch.arange(u.shape[1], device=u.device)])
    sign[sign == 0] = 1
    u, vh = (u * sign).float().cpu().contiguous(), (vh * sign[:, None]).float().cpu().contiguous()
    return SiteFactors(u, s.float().cpu(), vh, num_batches)


@dataclass(frozen=True)
class GradientSource:
    """What the init reads once ranks are allocated: the scoring pass's dense summed gradients (exact
    mode: already held, so no more memory) or its sketches (stream mode: no dense gradient at all).
    The factors are computed only for the allocated sites, 2r triplets each."""

    num_batches: int
    seed: int
    grads: Mapping[str, torch.Tensor] | None = None
    sketches: Sketches | None = None

    def factors(self, ranks: Mapping[str, int]) -> dict[str, SiteFactors]:
        """Top `ranks[name]` singular triplets per site; a sketch gives at most its width k."""
        if self.grads is not None:
            return self._dense(ranks, self.grads)
        assert self.sketches is not None
        sites = self.sketches.sites
        # Sites too small to sketch hold G densely: the randomized SVD is ~10x cheaper than a full one.
        dense = {n: k for n, k in ranks.items() if isinstance(sites[n], DenseSite)}
        out = self._dense(dense, {n: sites[n].g for n in dense})  # type: ignore[union-attr]
        for name, k in ranks.items():
            if name not in dense:
                low = sites[name].top(k)
                out[name] = _canonical(low.u, low.s, low.vh, self.num_batches)
        return out

    def _dense(self, ranks: Mapping[str, int], grads: Mapping[str, torch.Tensor]) -> dict[str, SiteFactors]:
        return gradient_factors(grads, ranks, num_batches=self.num_batches, seed=self.seed)


def scoring_source(ctx: ProxyContext, sites: list[Candidate]) -> GradientSource:
    """The LoRA sites' gradients as the scoring pass left them (shared with the proxy; a proxy that
    computed neither costs one more pass): dense in exact mode, sketched (k = o·max(ctx.ranks) + 1
    columns, see heterolora/sketch.py) in stream mode."""
    n, seed = ctx.num_batches, ctx.seed
    if ctx.scoring == "exact":
        grads = ctx.weight_grads()
        return GradientSource(n, seed, grads={c.name: grads[c.name] for c in sites})
    return GradientSource(n, seed, sketches=ctx.sketches())


def lora_scaling(alpha: float, rank: int, use_rslora: bool) -> float:
    """PEFT's LoRA scaling for one module."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def _columns(t: torch.Tensor, start: int, count: int, dim: int) -> torch.Tensor:
    """`count` slices from `start` along `dim`, zero-padded where the factorisation is shorter."""
    part = t.narrow(dim, start, max(0, min(count, t.shape[dim] - start)))
    missing = count - part.shape[dim]
    if missing <= 0:
        return part
    pad_shape = list(t.shape)
    pad_shape[dim] = missing
    return torch.cat([part, torch.zeros(pad_shape, dtype=t.dtype)], dim=dim)


def lora_ga_factors(f: SiteFactors, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of the LoRA-GA variant: direction ArB2r, scale stable (PEFT's defaults)."""
    mean_s = f.S / f.num_batches
    a = _columns(f.Vh, 0, rank, 0)
    b = _columns(f.U * mean_s, rank, rank, 1)
    d_out = f.U.shape[0]
    return a.contiguous(), (b * (d_out**0.25 / math.sqrt(LORA_GA_GAMMA))).contiguous()


def gora_factors(
    f: SiteFactors, rank: int, *, scaling: float, learning_rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of the GoRA-like variant: A random, scaling * B @ A = -lr * sqrt(d_in / r) * Ḡ P_A."""
    d_in = f.Vh.shape[1]
    bound = 1 / math.sqrt(d_in)  # nn.Linear's (and PEFT's LoRA A) kaiming_uniform(a=sqrt(5)) bound
    a = torch.empty(rank, d_in).uniform_(-bound, bound, generator=generator)
    a_pinv = torch.linalg.pinv(a.double())  # (d_in, r)
    mean_g_a = (f.U.double() * (f.S.double() / f.num_batches)) @ (f.Vh.double() @ a_pinv)  # Ḡ A⁺
    step = learning_rate * math.sqrt(d_in / rank) / scaling
    return a.contiguous(), (-step * mean_g_a).float().contiguous()


def site_generator(seed: int, name: str) -> torch.Generator:
    """A generator per site, independent of site order and of the global torch seed."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))


@dataclass(frozen=True)
class InitSite:
    """One LoRA module to initialise: its full name, rank and PEFT scaling."""

    name: str
    rank: int
    scaling: float


def module_sites(modules: list[ModuleEntry], use_rslora: bool) -> list[InitSite]:
    """The LoRA modules (rank > 0) as InitSites. Shortcut modules keep their standard init:
    LoRA-GA's correction needs a frozen base matrix to absorb -scaling * B @ A, and a shortcut has
    none (its base is an implicit identity or zero)."""
    lora = [m for m in modules if m.kind == "lora" and m.rank > 0]
    return [InitSite(m.name, m.rank, lora_scaling(m.alpha, m.rank, use_rslora)) for m in lora]


def plan_sites(plan: Plan) -> list[InitSite]:
    """The plan's LoRA modules as InitSites (see module_sites)."""
    return module_sites(plan.modules, plan.alpha_mode == "rslora")


def build_init(
    source: GradientSource,
    sites: list[InitSite],
    *,
    variant: InitVariant,
    seed: int,
    learning_rate: float | None = None,
) -> InitArtifact:
    """The init section and tensor file (PEFT key layout, float32) for `sites`."""
    from safetensors.torch import save

    lr = learning_rate or DEFAULT_LEARNING_RATE[variant]
    # 2r triplets per site: LoRA-GA's B takes triplets r+1..2r; GoRA's Ḡ is the rank-2r approximation
    factors = source.factors({s.name: 2 * s.rank for s in sites})
    tensors: dict[str, torch.Tensor] = {}
    for site in sorted(sites, key=lambda s: s.name):
        f = factors[site.name]
        if variant == "lora_ga":
            a, b = lora_ga_factors(f, site.rank)
        else:
            gen = site_generator(seed, site.name)
            a, b = gora_factors(f, site.rank, scaling=site.scaling, learning_rate=lr, generator=gen)
        tensors[adapter_key(site.name, "A")] = a
        tensors[adapter_key(site.name, "B")] = b
    data = save(tensors, metadata={"format": "pt"})
    info = InitInfo(
        variant=variant,
        direction="ArB2r" if variant == "lora_ga" else "random_A",
        scale="stable" if variant == "lora_ga" else "one_step",
        stable_gamma=LORA_GA_GAMMA if variant == "lora_ga" else None,
        recommended_learning_rate=lr,
        base_correction=variant == "lora_ga",
        num_batches=source.num_batches,
        seed=seed,
        sha256=sha256_hex(data),
        size=len(data),
        modules=len(sites),
    )
    return InitArtifact(info, data)


def attach_init(plan: Plan, artifact: InitArtifact) -> Plan:
    """The plan with its init section and tensor file."""
    with_init = plan.model_copy(update={"init": artifact.info})
    return with_init.attach_init_data(artifact.data)


def init_for_ranks(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    ranks: Mapping[str, int],
    *,
    alpha_ratio: float = 2.0,
    variant: InitVariant = DEFAULT_INIT_VARIANT,
    learning_rate: float | None = None,
    seed: int = 0,
) -> InitArtifact:
    """Gradient init for any rank assignment (e.g. a uniform-rank arm built without scoring), with
    alpha = alpha_ratio * r: one gradient pass over `batches` (K forward+backward passes), then the
    same construction as `heterolora.plan(..., init="gradient")`. Apply it to a PeftModel with
    `heterolora.init.apply.apply_init_artifact`."""
    sites = [InitSite(n, r, alpha_ratio) for n, r in ranks.items() if r > 0]  # scaling alpha / r
    return _one_pass_init(model, batches, sites, variant=variant, learning_rate=learning_rate, seed=seed)


def _one_pass_init(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    sites: list[InitSite],
    *,
    variant: InitVariant,
    learning_rate: float | None,
    seed: int,
) -> InitArtifact:
    source = gradient_pass(model, batches, sites, seed)
    return build_init(source, sites, variant=variant, seed=seed, learning_rate=learning_rate)


def gradient_pass(
    model: nn.Module, batches: list[dict[str, torch.Tensor]], sites: list[InitSite], seed: int
) -> GradientSource:
    """One gradient pass over `batches` for `sites` (exact or streamed, as scoring would choose)."""
    names = {s.name for s in sites}
    cands = [c for c in discover(model) if c.name in names]
    r_max = max((s.rank for s in sites), default=1)
    scoring = resolve_scoring("auto", cands, AllocationConfig.model_fields["scoring_memory_mb"].default)
    ctx = ProxyContext(model=model, batches=batches, candidates=cands, ranks=[r_max], seed=seed, scoring=scoring)
    return scoring_source(ctx, cands)
