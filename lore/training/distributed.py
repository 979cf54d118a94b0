"""torch.distributed set-up for `lore train` under torchrun (NCCL on GPUs, gloo on CPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: a process group is in use even with one rank (benchmarks/gpu.py times DDP's wrapper at world size 1)
    group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.group


def init_distributed(device_hint: str = "") -> DistInfo:
    """Joins the process group torchrun describes in the environment; a no-op for one process, unless the caller
    already initialised a group (then its rank and size are used, even for one process)."""
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available() and not device_hint.startswith("cpu"):
            torch.cuda.set_device(local_rank)
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, group=True)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not device_hint.startswith("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(info: DistInfo, *, synchronize: bool = False) -> None:
    """Leaves the process group. With `synchronize`, every rank first waits for the others (rank 0 still
    exporting and plotting), so no rank tears down its connections while a peer is using them; after an
    error there is no waiting, as a failed peer would never arrive."""
    if info.enabled and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def parameters_agree(module: torch.nn.Module, info: DistInfo, device: torch.device) -> bool:
    """Whether every rank holds bit-identical parameters (compares all of them against rank 0)."""
    if not info.enabled:
        return True
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()]).to(device)
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    mismatch = torch.tensor([0.0 if torch.equal(flat, reference) else 1.0], device=device)
    dist.all_reduce(mismatch, op=dist.ReduceOp.MAX)
    return bool(mismatch.item() == 0)
