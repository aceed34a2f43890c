"""DistributedDataParallel plumbing: the same script runs alone or under `torchrun --nproc_per_node N`."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as td
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str | None = None) -> DistContext:
    """Read torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK); init NCCL on GPUs, Gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not td.is_initialized():
        td.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world, local, dev)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    if not ctx.distributed:
        return model
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if ctx.device.type == "cuda" else model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """[b, D] per rank → [world * b, D] on every rank, gradients flowing back to each rank's slice.

    Every rank then computes the same global NT-Xent loss over all 2B views, as a single device would."""
    if not (td.is_available() and td.is_initialized()) or td.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z), dim=0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        td.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and td.is_initialized():
        td.destroy_process_group()
