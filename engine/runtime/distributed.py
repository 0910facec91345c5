"""One process or many (``torchrun``): rank, world size, device, process group.

Shared by training (DDP) and region-scale mapping (engine.mapping.ranks). torchrun sets
RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a single process. NCCL is used
between GPUs, gloo between CPU processes. Only rank 0 writes the files every rank shares
(checkpoints, metrics, the exported model, a map's assembled outputs).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from engine.errors import EngineError
from engine.runtime.precision import choose_device

# A collective waits this long for the slowest rank (a training step, a mapping shard) before failing.
DEFAULT_TIMEOUT = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str = "auto", timeout: dt.timedelta = DEFAULT_TIMEOUT) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name)
    if world > 1:
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise EngineError(
                    f"Process {rank} wants GPU {local_rank} but only {torch.cuda.device_count()} are visible: "
                    "start at most one process per GPU (torchrun's --nproc-per-node, a mapping job's \"ranks\")."
                )
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return Distributed(rank, world, local_rank, device)


def teardown(dist: Distributed) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own slice, summed over ranks
    (every rank's loss uses every rank's tensors, and DDP averages the gradients afterwards)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(torch_dist.get_world_size())]
        torch_dist.all_gather(parts, tensor.contiguous())
        ctx.rank = torch_dist.get_rank()
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        torch_dist.all_reduce(grad)
        return grad[ctx.rank]


def gather_with_grad(tensor: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, int]:
    """Every rank's ``tensor`` concatenated along ``dim`` in rank order (their sizes along ``dim`` may
    differ: a last, partial evaluation batch), and where the local one starts; gradients flow back to
    each rank's own part. Without a process group: ``(tensor, 0)``."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()) or torch_dist.get_world_size() == 1:
        return tensor, 0
    size = torch.tensor([tensor.shape[dim]], dtype=torch.int64, device=tensor.device)
    sizes = [torch.empty_like(size) for _ in range(torch_dist.get_world_size())]
    torch_dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    pad = [0, 0] * (tensor.dim() - 1 - dim % tensor.dim()) + [0, max(sizes) - tensor.shape[dim]]
    stacked = _GatherWithGrad.apply(torch.nn.functional.pad(tensor, pad))
    parts = [stacked[r].narrow(dim, 0, n) for r, n in enumerate(sizes)]
    return torch.cat(parts, dim=dim), sum(sizes[: torch_dist.get_rank()])
