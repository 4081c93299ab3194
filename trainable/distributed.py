"""Process-group setup and the few collectives the training loop needs.

Three ways a training process starts, and `setup_distributed` handles all of them:
- inside a process group someone else created (Ray Train's TorchTrainer does this before calling the
  worker function): use it as is, and never destroy it;
- under torchrun (RANK / WORLD_SIZE / MASTER_ADDR in the environment): create it, gloo on CPU, NCCL on CUDA;
- a plain single process: no process group at all; the collectives below become no-ops.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size, the device it computes on, and who owns the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # True when we created the process group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(preference: str, local_rank: int) -> torch.device:
    """`auto` means CUDA when available; a CUDA device is chosen by local rank."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but CUDA is not available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup_distributed(device_preference: str = "auto") -> DistEnv:
    """Join (or create, under torchrun) the process group and pick this rank's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = pick_device(device_preference, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistEnv(rank, world, local_rank, device, owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        device = pick_device(device_preference, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)  # reads RANK, WORLD_SIZE, MASTER_ADDR/PORT
        return DistEnv(dist.get_rank(), world, local_rank, device, owns_group=True)
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistEnv(0, 1, 0, device, owns_group=False)


def teardown_distributed(env: DistEnv) -> None:
    """Destroy the process group only if this module created it."""
    if env.owns_group and dist.is_initialized():
        # Leave together: gloo can abort a rank whose peer tears its connections down mid-operation.
        dist.barrier()
        # Free DDP reducers and finished gloo work held in reference cycles now, not during interpreter
        # finalization, where destroying them can abort the process.
        gc.collect()
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over ranks in place (a no-op on one process) and return it."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Max of `t` over ranks in place; used so every rank agrees on a flag (e.g. divergence)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s Python object, on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
