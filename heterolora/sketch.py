"""Streaming low-rank sketches of each site's accumulated gradient G = Σ_tokens δ xᵀ (d_out × d_in),
without ever forming G or any base-weight `.grad`.

Per batch, a forward hook keeps a reference to the site's input X (tokens × d_in) and a hook on the
output's gradient δ (tokens × d_out) adds
    range sketch     Y += δᵀ (X Ω)        (d_out × k)
    co-range sketch  Z += (Ψ δᵀ) X        (l × d_in)
with seeded Gaussian test matrices Ω (d_in × k) and Ψ (l × d_out), k = 2·r + 1 and l = 2·k + 1
(Tropp, Yurtsever, Udell & Cevher, SIAM J. Matrix Anal. Appl. 38(4), 2017). Oversampling 4
(k = 4·r + 1, `sketch_oversampling`) is about 10x more accurate on trained weights and costs twice
the sketch memory (docs/proxies.md). The reconstruction
Q = orth(Y), C = (Ψ Q)⁺ Z, Ĝ = Q C gives G's top singular values and vectors (`LowRank`). A site whose
sketch would not be smaller than G itself accumulates G densely (`DenseSite`), so it is exact.

All state is float32 whatever the weight dtype. Ω and Ψ are shared by sites of equal width (one
per d_in, one per d_out and device); each site's sketch is still a valid sketch, so the per-site
bounds hold. Each site's state lives on its own module's device (`site_devices`), so a model spread
over several GPUs (`device_map="auto"`) never copies activations between them to be sketched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from heterolora.config import DEFAULT_SKETCH_OVERSAMPLING
from heterolora.search_space import Candidate

Batches = list[dict[str, torch.Tensor]]
Step = Callable[[int], None]  # called after each batch's backward with the batch index


def sketch_sizes(rank: int, oversampling: int = DEFAULT_SKETCH_OVERSAMPLING) -> tuple[int, int]:
    """(k, l) for a target rank: range sketch width k = oversampling·r + 1, co-range l = 2k + 1."""
    k = oversampling * rank + 1
    return k, 2 * k + 1


@dataclass(frozen=True)
class LowRank:
    """Top singular triplets of a site's accumulated gradient: G ≈ u @ diag(s) @ vh.
    u: (d_out × r), s: (r,) descending, vh: (r × d_in); float32, on the sketch's device."""

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor


class DenseSite:
    """Exact accumulator: G += δᵀ X (float32)."""

    def __init__(self, d_out: int, d_in: int, device: torch.device) -> None:
        self.g = torch.zeros(d_out, d_in, dtype=torch.float32, device=device)

    @classmethod
    def of(cls, g: torch.Tensor) -> DenseSite:
        """Wrap an already accumulated (d_out, d_in) gradient (no copy)."""
        site = cls.__new__(cls)
        site.g = g
        return site

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        self.g.addmm_(delta.T, x)

    @property
    def nbytes(self) -> int:
        return self.g.numel() * 4

    def frobenius(self) -> float:
        return float(self.g.norm())

    def top(self, rank: int) -> LowRank:
        u, s, vh = torch.linalg.svd(self.g.double(), full_matrices=False)
        return LowRank(u[:, :rank].float(), s[:rank].float(), vh[:rank].float())

    def squared_singular_values(self, rank: int) -> torch.Tensor:
        """σ_1² ≥ σ_2² ≥ … (first `rank`), from the smaller Gram matrix in float64: about twice as
        fast as svdvals on CPU (docs/performance.md) and equal to it within 1e-14 relative."""
        g = self.g.double()
        gram = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g
        return torch.linalg.eigvalsh(gram).flip(0).clamp(min=0)[:rank]


class SketchedSite:
    """Range and co-range sketch of one site's G (Tropp et al. 2017, Algorithms 1 and 4)."""

    def __init__(self, omega: torch.Tensor, psi: torch.Tensor) -> None:
        self.omega, self.psi = omega, psi  # (d_in × k), (l × d_out); shared, not owned
        self.y = torch.zeros(psi.shape[1], omega.shape[1], dtype=torch.float32, device=omega.device)
        self.z = torch.zeros(psi.shape[0], omega.shape[0], dtype=torch.float32, device=omega.device)

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        self.y.addmm_(delta.T, x @ self.omega)
        self.z.addmm_(self.psi @ delta.T, x)

    @property
    def nbytes(self) -> int:
        return (self.y.numel() + self.z.numel()) * 4

    def frobenius(self) -> float:
        """Unbiased estimate of ‖G‖_F² from both sketches, square-rooted: E‖GΩ‖² = k‖G‖², E‖ΨG‖² =
        l‖G‖². Relative sd of the square ≈ √(2 / ((k + l)·r_eff)), r_eff = (Σσ²)² / Σσ⁴ ≥ 1."""
        probes = self.y.shape[1] + self.z.shape[0]  # k + l
        return float(((self.y.double().square().sum() + self.z.double().square().sum()) / probes).sqrt())

    def _core(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, C): Q = orth(Y), an orthonormal basis of G's approximate range, and C = (ΨQ)⁺ Z, the
        (k × d_in) core with Ĝ = Q C (Tropp et al. 2017, Algorithm 4), in float64."""
        q, _ = torch.linalg.qr(self.y.double())
        return q, torch.linalg.lstsq(self.psi.double() @ q, self.z.double()).solution

    def top(self, rank: int) -> LowRank:
        q, core = self._core()
        uc, s, vh = torch.linalg.svd(core, full_matrices=False)
        return LowRank((q @ uc[:, :rank]).float(), s[:rank].float(), vh[:rank].float())

    def squared_singular_values(self, rank: int) -> torch.Tensor:
        """σ² of Ĝ (Q has orthonormal columns, so those of C) from the k × k Gram C Cᵀ: the
        vectors are not needed, and this is ~10x faster than an SVD of C on CPU."""
        _, core = self._core()
        return torch.linalg.eigvalsh(core @ core.T).flip(0).clamp(min=0)[:rank]


Site = DenseSite | SketchedSite


class Sketches:
    """One accumulator per candidate site, fed by forward/backward hooks while batches stream."""

    def __init__(
        self,
        candidates: list[Candidate],
        rank: int,
        seed: int,
        device: torch.device,
        *,
        dense: bool = False,
        oversampling: int = DEFAULT_SKETCH_OVERSAMPLING,
        devices: dict[str, torch.device] | None = None,
    ) -> None:
        """`devices`: a site's device where it is not `device` (a model spread over GPUs)."""
        self.k, self.l = sketch_sizes(rank, oversampling)
        self.rank = rank
        self.sites: dict[str, Site] = {}
        omegas: dict[tuple[int, torch.device], torch.Tensor] = {}
        psis: dict[tuple[int, torch.device], torch.Tensor] = {}
        for c in candidates:
            dev = (devices or {}).get(c.name, device)
            if dense or c.d_out * self.k + self.l * c.d_in >= c.d_out * c.d_in:
                self.sites[c.name] = DenseSite(c.d_out, c.d_in, dev)
                continue
            if (c.d_in, dev) not in omegas:
                omegas[c.d_in, dev] = _gaussian((c.d_in, self.k), seed, 1, c.d_in, dev)
            if (c.d_out, dev) not in psis:
                psis[c.d_out, dev] = _gaussian((self.l, c.d_out), seed, 2, c.d_out, dev)
            self.sites[c.name] = SketchedSite(omegas[c.d_in, dev], psis[c.d_out, dev])
        self.test_matrix_bytes = 4 * sum(t.numel() for t in [*omegas.values(), *psis.values()])

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.sites.values()) + self.test_matrix_bytes

    def accumulators(self) -> list[torch.Tensor]:
        """Every tensor the batches add into (Y and Z, or a dense G, per site): what ranks sum."""
        return [t for s in self.sites.values() for t in ((s.g,) if isinstance(s, DenseSite) else (s.y, s.z))]

    def top(self, rank: int | None = None) -> dict[str, LowRank]:
        """Per site: the top `rank` (default: the sketch's rank) singular values and vectors of G."""
        return {name: site.top(rank or self.rank) for name, site in self.sites.items()}


def sketch_gradients(
    model: nn.Module,
    batches: Batches,
    candidates: list[Candidate],
    rank: int,
    *,
    seed: int = 0,
    step: Step | None = None,
    checkpointing: bool = False,
) -> Sketches:
    """Sketch every candidate's gradient summed over `batches` (on the model's device, which the
    batches must already be on) in one pass; `.top()` then gives each site's top `rank` singular
    values and vectors. The model is left as it was (weights, flags, mode)."""
    device = next(model.parameters()).device
    sketches = Sketches(candidates, rank, seed, device, devices=site_devices(model, candidates))
    stream(model, batches, sketches.sites, lambda b: model(**b).loss, step, checkpointing)
    return sketches


def site_devices(model: nn.Module, candidates: list[Candidate]) -> dict[str, torch.device]:
    """The device of each site's weight (sites without parameters are left out)."""
    out = {}
    for c in candidates:
        try:
            weight = next(model.get_submodule(c.name).parameters(), None)
        except AttributeError:  # not attached (a shortcut site outside scoring)
            continue
        if weight is not None:
            out[c.name] = weight.device
    return out


def _gaussian(shape: tuple[int, int], seed: int, role: int, width: int, device: torch.device) -> torch.Tensor:
    """Seeded on the CPU so a plan does not depend on the device it ran on."""
    g = torch.Generator().manual_seed(hash((seed, role, width)) & 0x7FFF_FFFF)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device)


def dense_gradient_bytes(candidates: list[Candidate]) -> int:
    """Float32 bytes of every candidate's dense accumulated gradient: what exact scoring holds."""
    return 4 * sum(c.d_out * c.d_in for c in candidates)


def groups_under(candidates: list[Candidate], cap_bytes: int) -> list[list[Candidate]]:
    """Consecutive (layer-ordered) groups of sites whose dense float32 gradients fit in `cap_bytes`
    (a site larger than the cap forms a group alone)."""
    groups: list[list[Candidate]] = [[]]
    held = 0
    for c in candidates:
        size = 4 * c.d_out * c.d_in
        if groups[-1] and held + size > cap_bytes:
            groups.append([])
            held = 0
        groups[-1].append(c)
        held += size
    return groups


@contextmanager
def _site_hooks(model: nn.Module, sites: dict[str, Site]) -> Iterator[None]:
    """Feed each site's (X, δ) pairs into its accumulator; inputs reach the backward hook by
    reference (LoRA training keeps the same tensors for its A factor)."""
    handles = []

    def forward_hook(site: Site) -> Callable:
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if not (torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad):
                return  # a no-grad pass (e.g. the first pass of gradient checkpointing)
            x = args[0].detach()

            def on_grad(delta: torch.Tensor) -> None:
                site.add(x.reshape(-1, x.shape[-1]).float(), delta.reshape(-1, delta.shape[-1]).float())

            out.register_hook(on_grad)

        return hook

    embed = model.get_input_embeddings()
    # transformers' enable_input_require_grads: gradients reach the activations with every weight frozen
    handles.append(embed.register_forward_hook(lambda m, a, out: out.requires_grad_(True)))
    try:
        for name, site in sites.items():
            handles.append(model.get_submodule(name).register_forward_hook(forward_hook(site)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def frozen(model: nn.Module, checkpointing: bool = False) -> Iterator[None]:
    """Every parameter frozen (no `.grad` anywhere), eval mode, optional gradient checkpointing;
    flags, mode and checkpointing restored afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    was_checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        if checkpointing and not was_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.eval()  # no dropout (transformers checkpoints in eval mode too when asked explicitly)
        yield
    finally:
        if checkpointing and not was_checkpointing:
            model.gradient_checkpointing_disable()
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)


def stream(
    model: nn.Module,
    batches: Batches,
    sites: dict[str, Site],
    loss: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    step: Step | None = None,
    checkpointing: bool = False,
) -> None:
    """One pass over `batches`: forward, backward to the activations, accumulators updated."""
    with frozen(model, checkpointing), _site_hooks(model, sites):
        if checkpointing:
            _checkpointing_in_eval(model)
        for i, batch in enumerate(batches):
            loss(batch).backward()
            if step is not None:
                step(i)


def _checkpointing_in_eval(model: nn.Module) -> None:
    """transformers only checkpoints while `module.training`; scoring runs in eval mode (no
    dropout), so flip the flag on the checkpointed layers alone. Dropout modules stay in eval."""
    for m in model.modules():
        if getattr(m, "gradient_checkpointing", False):
            m.training = True


def resolve_scoring(scoring: str, candidates: list[Candidate], cap_mb: int) -> str:
    """ "auto" → "exact" when every candidate's dense float32 gradient fits in `cap_mb`, else "stream"."""
    if scoring != "auto":
        return scoring
    return "exact" if dense_gradient_bytes(candidates) <= cap_mb << 20 else "stream"
