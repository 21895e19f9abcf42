"""The two kinds of module that sit at a shortcut site.

Both expose `term(u)`: the tensor the router adds at the site (docs/shortcuts.md). Neither stores
a d×d base matrix: a residual's identity is the residual branch the model already has, and a cross
shortcut's base is zero, so only the trainable low-rank part (or, while scoring, the probe) is kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LowRankShortcut(nn.Module):
    """s·B·A·u with A (r×d) Kaiming-uniform, B (d×r) zero, s = alpha/r (alpha/sqrt(r) for rsLoRA).

    Trains r·2·d parameters. Init B = 0 makes the term exactly zero, so attaching it preserves the
    model's function until the first optimiser step.
    """

    def __init__(
        self,
        d: int,
        rank: int,
        alpha: float,
        *,
        rslora: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"shortcut rank must be positive, got {rank}")
        self.d, self.rank, self.alpha = d, rank, alpha
        self.scale = alpha / (math.sqrt(rank) if rslora else rank)
        self.A = nn.Parameter(torch.empty(rank, d, dtype=dtype, device=device))  # (r, d)
        self.B = nn.Parameter(torch.zeros(d, rank, dtype=dtype, device=device))  # (d, r)
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # nn.Linear's default, as PEFT's LoRA A

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        # (..., d) -> (..., r) -> (..., d); computed in the parameters' dtype, returned in u's.
        z = F.linear(F.linear(u.to(self.A.dtype), self.A), self.B)
        return (z * self.scale).to(u.dtype)

    def term(self, u: torch.Tensor) -> torch.Tensor:
        return self(u)

    def extra_repr(self) -> str:
        return f"d={self.d}, rank={self.rank}, alpha={self.alpha}, scale={self.scale:g}"


class ShortcutProbe(nn.Module):
    """Scoring-time stand-in for a shortcut: a full-rank map on an identity reference, (I + P)·u
    with P = 0, of which the site receives (I + P)·u - u = P·u (exactly zero).

    `weight` (= P, d×d like an nn.Linear weight) gives the shared gradient pass dL/dP, the gradient
    of a full-rank shortcut at this site, so gradient proxies score it like a LoRA site's dL/dW.
    The identity inside `forward` is what output-scaling proxies act on: scaling the output by a
    turns the term into (a - 1)·u, i.e. scaling a residual branch down to a·u, and for a cross
    shortcut subtracting (1 - a) of an identity skip.
    """

    def __init__(self, d: int, *, dtype: torch.dtype | None = None, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d, d, dtype=dtype, device=device))  # (d_out, d_in)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + F.linear(u, self.weight.to(u.dtype))

    def term(self, u: torch.Tensor) -> torch.Tensor:
        return self(u) - u  # u + 0 - u is exactly 0 in floating point, so scoring sees the base model
