"""Stand-ins for a SLURM array in the cluster tests: an executor that runs each shard
in this process with the fake renderer (or not at all), and a queue to match."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from two4two.cluster.task import ShardJob, render_shard


class FakeJob:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def done(self) -> bool:
        return True


class FakeExecutor:
    """``map_array`` renders each shard in-process with ``render_fn`` (``None``: submits
    without running anything, as if the tasks were still queued)."""

    def __init__(self, render_fn: Callable | None, array_id: int = 77,
                 fail: Callable[[ShardJob], bool] = lambda job: False) -> None:
        self.render_fn = render_fn
        self.array_id = array_id
        self.fail = fail
        self.submitted: list[list[ShardJob]] = []

    def map_array(self, fn: Callable, jobs: Sequence[ShardJob]) -> list[FakeJob]:
        self.submitted.append(list(jobs))
        handles = []
        for i, job in enumerate(jobs):
            if self.render_fn is not None:
                try:
                    render_shard(job, render_fn=self.render_fn)
                except BaseException:  # the task failed (SLURM would log it)
                    pass
            handles.append(FakeJob(f"{self.array_id}_{i}"))
        self.array_id += 1
        return handles


class FakeQueue:
    """Task ids in ``active`` are queued or running; all others have left the queue."""

    def __init__(self, active: dict[str, str] | None = None) -> None:
        self.states = dict(active or {})

    def active(self, job_ids: Iterable[str]) -> dict[str, str]:
        return {j: self.states[j] for j in job_ids if j in self.states}


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def ids_of(directory: Path) -> list[Any]:
    import json

    return [json.loads(line)["id"] for line in
            (directory / "parameters.jsonl").read_text().splitlines()]
