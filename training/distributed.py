"""One process or many (``torchrun``): rank, world size, device, process group.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a single
process. NCCL is used between GPUs, gloo between CPU processes. Only rank 0
writes files (checkpoints, metrics, the exported model).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from engine.errors import EngineError
from engine.precision import choose_device


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

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's value of ``flag`` on every rank (e.g. 'stop now')."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
        torch_dist.broadcast(tensor, src=0)
        return bool(tensor.item())


def setup(device_name: str = "auto") -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name)
    if world > 1:
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise EngineError(
                    f"Process {rank} wants GPU {local_rank} but only {torch.cuda.device_count()} are visible: "
                    "start torchrun with --nproc_per_node at most the number of GPUs."
                )
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                          timeout=dt.timedelta(minutes=30))
    return Distributed(rank, world, local_rank, device)


def teardown(dist: Distributed) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
