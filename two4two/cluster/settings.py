"""Settings of a render on a SLURM cluster: the ``[dataset.slurm]`` table and its flags.

Every field maps onto one ``sbatch`` option through submitit
(``docs/cluster_render.md`` lists them); ``shard_size`` is ours: how many scenes
one array task renders. Standard library only, so that the dataset TOML parser
can use it without importing submitit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DEFAULT_SHARD_SIZE", "RENDER_DEVICES", "SlurmSettings", "parse_minutes",
           "parse_slurm_table"]

DEFAULT_SHARD_SIZE = 500
"""Scenes per array task: about 10 minutes at 1 image/s on 1 core, so that a
preempted task loses little and the array stays in the hundreds of tasks for the
paper's 125,000 images per dataset."""

RENDER_DEVICES = ("cpu", "cuda", "optix")
"""Values of ``render_device``: Cycles on the CPU, or on an NVIDIA GPU through CUDA
or OptiX (one GPU per worker process)."""


@dataclasses.dataclass(frozen=True)
class SlurmSettings:
    """Resources of each array task (``[dataset.slurm]``; ``None``: SLURM's default)."""

    partition: str | None = None
    """``--partition``."""
    time: int = 60
    """``--time`` in minutes per task (the TOML also takes ``"H:MM:SS"``/``"D-HH:MM:SS"``)."""
    cpus_per_task: int = 1
    """``--cpus-per-task``: render worker processes per task (one Blender each)."""
    gpus_per_task: int = 0
    """``--gpus-per-task`` (with ``render_device = "cuda"`` or ``"optix"``)."""
    array_parallelism: int = 256
    """``--array=...%N``: at most this many tasks run at once."""
    account: str | None = None
    """``--account``."""
    extra: dict[str, str] = dataclasses.field(default_factory=dict)
    """Any other ``sbatch`` option, e.g. ``{qos = "normal", mem = "4G"}`` (``--qos=normal``)."""
    shard_size: int = DEFAULT_SHARD_SIZE
    """Scenes per array task."""

    def replace(self, **changes: Any) -> SlurmSettings:
        """A copy with the given fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def executor_parameters(self) -> dict[str, Any]:
        """Keyword arguments of submitit's ``SlurmExecutor.update_parameters``."""
        parameters: dict[str, Any] = {
            "time": self.time, "cpus_per_task": self.cpus_per_task,
            "array_parallelism": self.array_parallelism, "ntasks_per_node": 1, "nodes": 1,
        }
        if self.partition:
            parameters["partition"] = self.partition
        if self.account:
            parameters["account"] = self.account
        if self.gpus_per_task:
            parameters["gpus_per_task"] = self.gpus_per_task
        if self.extra:
            parameters["additional_parameters"] = dict(self.extra)
        return parameters


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_minutes(value: int | str) -> int:
    """Minutes of a SLURM time limit: an int, ``"MM"``, ``"H:MM:SS"`` or ``"D-HH:MM:SS"``
    (``"H:MM"`` with a day, as sbatch reads it; seconds round up).

    Raises:
        ValueError: not a time limit, or not positive.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected minutes or 'H:MM:SS', got {value!r}")
    if isinstance(value, int):
        minutes = value
    else:
        match = _TIME.match(str(value).strip())
        if match is None:
            raise ValueError(f"expected minutes or 'H:MM:SS', got {value!r}")
        days, first, second, third = match.groups()
        if days is not None:  # D-HH[:MM[:SS]]
            hours, mins, secs = int(first), int(second or 0), int(third or 0)
            minutes = int(days) * 1440 + hours * 60 + mins + (secs > 0)
        elif third is not None:  # HH:MM:SS
            minutes = int(first) * 60 + int(second) + (int(third) > 0)
        elif second is not None:  # MM:SS
            minutes = int(first) + (int(second) > 0)
        else:
            minutes = int(first)
    if minutes < 1:
        raise ValueError(f"must be at least 1 minute, got {value!r}")
    return minutes


def parse_slurm_table(data: Any, fail: Callable[[str, str], Exception]) -> SlurmSettings:
    """Validate a ``[dataset.slurm]`` table; ``fail(key, message)`` makes the error to raise."""
    if not isinstance(data, Mapping):
        raise fail("", f"expected a table, got {data!r}")
    known = [f.name for f in dataclasses.fields(SlurmSettings)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise fail(key, f"unknown key; known keys: {', '.join(known)}")
        if key in ("partition", "account"):
            if not isinstance(value, str) or not value:
                raise fail(key, f"expected a non-empty string, got {value!r}")
        elif key == "time":
            try:
                value = parse_minutes(value)
            except ValueError as error:
                raise fail(key, str(error)) from None
        elif key == "extra":
            if not isinstance(value, Mapping) or not all(
                    isinstance(v, str | int) and not isinstance(v, bool) for v in value.values()):
                raise fail(key, "expected a table of sbatch options, e.g. {qos = \"normal\"}")
            value = {str(k): str(v) for k, v in value.items()}
        else:
            minimum = 0 if key == "gpus_per_task" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise fail(key, f"expected an integer >= {minimum}, got {value!r}")
        values[key] = value
    return SlurmSettings(**values)
