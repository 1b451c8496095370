"""Distributed training helpers (``torchrun``): process group, device, reductions.

Under ``torchrun --nproc_per_node=N`` the environment holds ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`setup` starts the process group (``nccl`` on CUDA, ``gloo`` on CPU) and
pins each process to ``cuda:LOCAL_RANK``. Without those variables it is a
single-process run and nothing is initialised.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

from dubfiv.devices import resolve_device
from dubfiv.train.errors import TrainingError

__all__ = [
    "DistContext",
    "all_reduce_min_max",
    "all_reduce_sum",
    "barrier",
    "setup",
    "teardown",
    "wrap_ddp",
]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistContext:
    """Start the process group if launched by ``torchrun``; return this process's context."""
    base = resolve_device(device, error=TrainingError)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=base)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=base)


def teardown(context: DistContext) -> None:
    """Destroy the process group started by :func:`setup` (no-op for one process)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: Sequence[float] | torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum float64 ``values`` over all processes (returns them unchanged for one process)."""
    tensor = torch.as_tensor(values, dtype=torch.float64)
    if not context.distributed:
        return tensor
    # nccl reduces CUDA tensors only; gloo works on the CPU
    tensor = tensor.to(context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


def all_reduce_min_max(
    values: torch.Tensor, context: DistContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise minimum and maximum of float64 ``values`` over all processes."""
    low = values.to(torch.float64)
    high = low.clone()
    if context.distributed:
        low, high = low.to(context.device), high.to(context.device)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return low.cpu(), high.cpu()


def barrier(context: DistContext) -> None:
    """Wait for all processes (no-op for one process)."""
    if context.distributed:
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, context: DistContext) -> torch.nn.Module | None:
    """``module`` in DistributedDataParallel (which broadcasts rank 0's state to all), or
    ``None`` for one process."""
    if not context.distributed:
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [context.device.index] if context.device.type == "cuda" else None
    # no buffer sync in each forward pass (newer torch: forward_sync_buffers;
    # either way rank 0's state is broadcast once when wrapping)
    params = inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in params
               else "broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=ids, **no_sync)
