"""What is still queued or running: SLURM's ``squeue``, or submitit's job handles.

The submission record ``.shards/jobs.jsonl`` maps every submitted shard to its
array task id (``<array job>_<task>``). A shard whose task is neither done nor in
the queue has ended without finishing (failed, cancelled, or lost with its node).
``squeue`` is asked rather than ``sacct``, so no accounting database is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from two4two.cluster.shards import SHARDS, Shard
from two4two.errors import Two4TwoError
from two4two.files import append_line

__all__ = ["JOBS", "HandleQueue", "JobQueue", "JobRecord", "QueueError", "SlurmQueue",
           "read_jobs", "record_jobs"]

JOBS = "jobs.jsonl"

_ACTIVE = {"PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending",
           "REQUEUE_HOLD": "pending", "REQUEUE_FED": "pending", "RESV_DEL_HOLD": "pending",
           "SUSPENDED": "pending", "PREEMPTED": "pending", "STOPPED": "pending",
           "RUNNING": "running", "COMPLETING": "running",
           "STAGE_OUT": "running", "SIGNALING": "running", "RESIZING": "running"}


class QueueError(Two4TwoError, RuntimeError):
    """The queue cannot be asked (``squeue`` missing or failing)."""


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """One submitted shard."""

    dirname: str
    index: int
    job_id: str
    submitted: float


def record_jobs(output_dir: str | os.PathLike, shards: Sequence[Shard],
                job_ids: Sequence[str]) -> None:
    """Append the submitted shards with their task ids to ``.shards/jobs.jsonl``."""
    path = Path(output_dir) / SHARDS / JOBS
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for shard, job_id in zip(shards, job_ids, strict=True):
        append_line(path, json.dumps(dataclasses.asdict(
            JobRecord(shard.dirname, shard.index, str(job_id), now))))


def read_jobs(output_dir: str | os.PathLike) -> dict[tuple[str, int], JobRecord]:
    """The latest submission of each shard, by ``(folder, shard index)``."""
    path = Path(output_dir) / SHARDS / JOBS
    latest: dict[tuple[str, int], JobRecord] = {}
    if not path.is_file():
        return latest
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = JobRecord(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut by a kill
        latest[(record.dirname, record.index)] = record
    return latest


class JobQueue(Protocol):
    """Which of some task ids are still queued (``'pending'``) or ``'running'``."""

    def active(self, job_ids: Iterable[str]) -> dict[str, str]: ...


class SlurmQueue:
    """Asks ``squeue`` (one call: this user's jobs, array tasks one per line)."""

    def active(self, job_ids: Iterable[str]) -> dict[str, str]:
        wanted = set(job_ids)
        if not wanted:
            return {}
        if shutil.which("squeue") is None:
            raise QueueError("squeue is not on PATH: run this on a machine of the SLURM "
                             "cluster (a login node)")
        # this user's jobs (``--me``), not ``--jobs``: naming a job that has left the
        # queue makes squeue fail
        command = ["squeue", "--noheader", "--array", "--format=%i|%T", "--me"]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=60)
        if result.returncode != 0:
            raise QueueError(f"squeue failed: {' '.join(result.stderr.split())}")
        return _parse_squeue(result.stdout, wanted)


def _parse_squeue(output: str, wanted: set[str]) -> dict[str, str]:
    states: dict[str, str] = {}
    for line in output.splitlines():
        job_id, _, state = line.strip().partition("|")
        state = _ACTIVE.get(state.strip())
        if state is not None and job_id in wanted:
            states[job_id] = state
    return states


class HandleQueue:
    """Asks submitit's job handles (any executor, e.g. ``LocalExecutor`` in tests)."""

    def __init__(self, jobs: Mapping[str, Any]) -> None:
        self.jobs = dict(jobs)

    def active(self, job_ids: Iterable[str]) -> dict[str, str]:
        return {j: "running" for j in job_ids if j in self.jobs and not self.jobs[j].done()}
