"""Planning one model with several processes (GPUs, or nodes) under torch.distributed.

Launched by `torchrun` (or `accelerate launch`, or the service's `HETEROLORA_WORKER_PROCS`), every
process builds the same scoring batches from the same sample and seed, then scores its own
contiguous block of them (`Group.shard`). What a gradient proxy reads is linear in the data, so
one `all_reduce(SUM)` per statistic gives every rank the statistic of the whole sample:

- exact scoring: each site's accumulated gradient G = Σ δᵀX (d_out × d_in floats);
- streamed scoring: each site's sketches Y = Σ δᵀ(XΩ) and Z = Σ (Ψδᵀ)X, Ω and Ψ drawn from the
  plan's seed on every rank alike ((d_in + d_out)·k + l·d_in floats, heterolora/sketch.py);
- group-wise dense gradients (SNIP's streamed mode), one group at a time.

Scores, allocation and the gradient init are then computed from identical sums on every rank;
rank 0's plan is broadcast so that every rank returns the same `Plan` (rank 0 alone writes files).
Proxies that do not read gradients that way (synflow, alpha_test) run whole on every rank.

Only data parallelism is reduced this way. FSDP/ZeRO-3 shard parameters, not activations: each
rank's hooks still see full X and δ for its own batches, so the same sums hold. Tensor
parallelism (δ split along d_out) would need Y's rows kept per shard; it is not supported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from heterolora.errors import HeteroLoraError

T = TypeVar("T")
BUCKET_BYTES = 32 << 20  # tensors reduced together up to this size (fewer, larger messages)
TIMEOUT_ENV = "HETEROLORA_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800
_created = False  # from_env initialised the default process group (release() destroys it)


class DistributedError(HeteroLoraError):
    """A rank failed or disagreed with the others; the plan is not produced."""

    code = "distributed_failed"


@dataclass
class Group:
    """This process's place in the process group, and what it has all-reduced."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    bytes_reduced: int = 0  # float32 bytes this rank sent into all-reduces
    reductions: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous block: items[r·n // w : (r+1)·n // w]. Blocks in rank order are the
        items in order, so sums do not depend on how many ranks split them (up to float rounding)."""
        n = len(items)
        return list(items[self.rank * n // self.world_size : (self.rank + 1) * n // self.world_size])

    def sum_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum each tensor over the ranks, in place (float32 buckets per device)."""
        for bucket in _buckets(tensors):
            flat = torch.cat([t.reshape(-1) for t in bucket])
            with self.collective("all-reduce"):
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for t in bucket:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
            self.bytes_reduced += flat.numel() * flat.element_size()
            self.reductions += 1

    def agree(self, what: str, value: str) -> None:
        """Raise DistributedError on every rank unless all ranks passed the same `value`."""
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        seen: list[Any] = [None] * self.world_size
        with self.collective(f"checking {what}"):
            dist.all_gather_object(seen, digest)
        if len(set(seen)) > 1:
            differ = [r for r, d in enumerate(seen) if d != seen[0]]
            raise DistributedError(f"ranks {differ} have a different {what} from rank 0: every rank must plan alike")

    def from_main(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (pickled)."""
        box = [obj if self.is_main else None]
        with self.collective("broadcast"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """A failed collective (a rank died, or timed out) as a DistributedError."""
        try:
            yield
        except NotImplementedError:
            raise  # a misuse (e.g. an FSDP-sharded tensor), not a lost rank
        except (RuntimeError, dist.DistBackendError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed, another rank probably died ({first})"
            ) from exc


def _buckets(tensors: Sequence[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if t.dtype != torch.float32:
            raise TypeError(f"sum_ reduces float32 accumulators, got {t.dtype}")
        by_device.setdefault(t.device, []).append(t)
    for group in by_device.values():
        bucket: list[torch.Tensor] = []
        size = 0
        for t in group:
            if bucket and size + t.numel() * 4 > BUCKET_BYTES:
                yield bucket
                bucket, size = [], 0
            bucket.append(t)
            size += t.numel() * 4
        if bucket:
            yield bucket


def launched() -> bool:
    """Started by a launcher with more than one process (WORLD_SIZE > 1)?"""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def rank_device(device: str | None) -> str | None:
    """Under a launcher with GPUs, a bare "cuda" (or no device) means this rank's GPU, LOCAL_RANK."""
    if not launched() or not torch.cuda.is_available() or device not in (None, "cuda"):
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def from_env(device: str | None = None) -> Group | None:
    """The process group a launcher described in the environment (WORLD_SIZE, RANK, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT), initialised if nobody did yet: NCCL for a CUDA device, else gloo.
    None in a single process."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() == 1:
            return None
        return Group(dist.get_rank(), dist.get_world_size(), _local_rank(), str(dist.get_backend()))
    if not launched():
        return None
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device is not None and torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    timeout = timedelta(seconds=int(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout}
    if cuda:
        torch.cuda.set_device(torch.device(device))
        kwargs["device_id"] = torch.device(device)
    global _created
    try:
        dist.init_process_group(**kwargs)
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"could not join the process group ({str(exc).splitlines()[0]})") from exc
    _created = True
    return Group(dist.get_rank(), dist.get_world_size(), _local_rank(), backend)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def release() -> None:
    """Destroy the process group if `from_env` created it (the CLI does, once its plan is out)."""
    global _created
    if _created and dist.is_initialized():
        dist.destroy_process_group()
    _created = False


def batches_digest(batches: Sequence[dict[str, torch.Tensor]]) -> str:
    """A hash of the scoring batches' contents (every rank must build the same ones)."""
    h = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch):
            t = batch[key].detach().cpu().contiguous()
            h.update(key.encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes())
    return h.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """Cheap fingerprint of the weights: shape and a few sums per parameter."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            full = p.full_tensor() if hasattr(p, "full_tensor") else p  # an FSDP2 DTensor: its whole value
            h.update(f"{name}{tuple(full.shape)}{float(full.float().sum()):.6e}".encode())
    return h.hexdigest()


def check_agreement(
    group: Group, model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]], config: Any, *ids: Any
) -> None:
    """Every rank must plan the same model on the same batches with the same settings."""
    group.agree("configuration", json.dumps([config.model_dump(mode="json"), *ids], sort_keys=True, default=str))
    group.agree("scoring sample", batches_digest(batches))
    group.agree("model weights", model_digest(model))


def fully_sharded(model: torch.nn.Module) -> bool:
    """Are the model's parameters sharded DTensors (FSDP2 `fully_shard`)? Their `.grad` is then a
    shard, so exact scoring (which reads `weight.grad`) cannot run; streamed scoring reads each
    site's X and δ in hooks, which FSDP leaves whole."""
    return any(type(p).__name__ == "DTensor" for p in model.parameters())
