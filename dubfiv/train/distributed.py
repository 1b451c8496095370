"""Distributed training helpers (``torchrun`` or ``srun``): process group, device, reductions.

Under ``torchrun --nproc_per_node=N`` the environment holds ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`setup` starts the process group (``nccl`` on CUDA, ``gloo`` on CPU) and
pins each process to ``cuda:LOCAL_RANK`` (``LOCAL_RANK`` modulo the visible
GPUs, so a task that sees only its own GPU takes ``cuda:0``).

A step of SLURM's ``srun --ntasks=N`` (N > 1) without ``torchrun`` works too:
when ``WORLD_SIZE`` and ``RANK`` are unset, :func:`slurm_environment` maps
``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` onto ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``, takes ``MASTER_ADDR`` from the first host of
the step's node list and ``MASTER_PORT`` from the job id (each unless already
set), and :func:`setup` exports them before the ``env://`` initialisation
(docs/slurm.md). Without any of these variables it is a single-process run and
nothing is initialised.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.distributed as dist

from dubfiv.devices import resolve_device
from dubfiv.train.errors import TrainingError

__all__ = [
    "DistContext",
    "all_reduce_min_max",
    "all_reduce_sum",
    "barrier",
    "first_host",
    "setup",
    "slurm_environment",
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


#: ``MASTER_PORT`` of an ``srun`` launch without one: this base plus the job id modulo
#: :data:`SLURM_PORT_SPAN` (20000-29999: below Linux's ephemeral ports, away from SLURM's own).
SLURM_PORT_BASE = 20000
SLURM_PORT_SPAN = 10000

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def first_host(nodelist: str) -> str | None:
    """First host name of a SLURM host list (``node[01-04,7]`` gives ``node01``).

    Handles plain names, comma-separated lists and bracketed ranges (several
    brackets too: ``a[1-2]b[3-4]`` gives ``a1b3``); ``None`` for anything else.
    """
    depth, end = 0, len(nodelist)
    for index, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            return None
        if char == "," and depth == 0:
            end = index
            break
    first = nodelist[:end].strip()
    if depth != 0 or not first:
        return None

    def first_entry(match: re.Match[str]) -> str:
        return match.group(1).split(",")[0].split("-")[0].strip()

    host = _BRACKETS.sub(first_entry, first)
    if not host or re.search(r"[\[\]\s]", host):
        return None
    return host


def _scontrol_first_host(nodelist: str) -> str | None:
    """First host of ``nodelist`` by ``scontrol show hostnames`` (``None`` if it fails)."""
    try:
        result = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                                text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def slurm_environment(
    env: Mapping[str, str],
    expand: Callable[[str], str | None] = _scontrol_first_host,
) -> dict[str, str] | None:
    """torch.distributed's variables for a process started by ``srun``, or ``None``.

    ``None`` unless this is a task of a SLURM job step (``SLURM_STEP_ID`` and
    ``SLURM_PROCID`` set) with ``SLURM_NTASKS`` > 1, and ``WORLD_SIZE`` and
    ``RANK`` are unset (``torchrun`` sets them). Otherwise ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` (the given one, else the first
    host of ``SLURM_STEP_NODELIST`` or ``SLURM_JOB_NODELIST``, by
    :func:`first_host` or else ``expand``, which defaults to ``scontrol show
    hostnames``) and ``MASTER_PORT`` (the given one, else
    ``SLURM_PORT_BASE + SLURM_JOB_ID % SLURM_PORT_SPAN``). Raises
    :class:`TrainingError` when a variable needed is missing or malformed.
    """
    if "WORLD_SIZE" in env or "RANK" in env:
        return None
    if "SLURM_STEP_ID" not in env or "SLURM_PROCID" not in env:
        return None
    try:
        world_size = int(env.get("SLURM_NTASKS", "1"))
        rank = int(env["SLURM_PROCID"])
        local_rank = int(env.get("SLURM_LOCALID", "0"))
    except ValueError as error:
        raise TrainingError(f"malformed SLURM task variables: {error}") from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise TrainingError(f"SLURM_PROCID={rank} is outside 0..{world_size - 1} (SLURM_NTASKS)")

    master_addr = env.get("MASTER_ADDR")
    if not master_addr:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if not nodelist:
            raise TrainingError("srun launch without SLURM_STEP_NODELIST or SLURM_JOB_NODELIST: "
                                "set MASTER_ADDR")
        master_addr = first_host(nodelist) or expand(nodelist)
        if not master_addr:
            raise TrainingError(f"cannot read the first host of {nodelist!r}: set MASTER_ADDR")
    master_port = env.get("MASTER_PORT")
    if not master_port:
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        if not job_id or not job_id.isdigit():
            raise TrainingError("srun launch without a numeric SLURM_JOB_ID: set MASTER_PORT")
        master_port = str(SLURM_PORT_BASE + int(job_id) % SLURM_PORT_SPAN)
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank),
            "MASTER_ADDR": master_addr, "MASTER_PORT": master_port}


def setup(device: str | None = None) -> DistContext:
    """Start the process group if launched by ``torchrun`` or ``srun``; return this process's
    context."""
    base = resolve_device(device, error=TrainingError)
    launch = slurm_environment(os.environ)
    if launch is not None:
        os.environ.update(launch)  # env:// initialisation reads them
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=base)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        # srun --gpus-per-task=1 shows each task only its own GPU (cuda:0)
        base = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
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
