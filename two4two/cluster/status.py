"""Where a sharded render stands: per folder, shards done / running / pending /
failed / missing, images/s and an ETA, from the markers and the queue alone."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from two4two.cluster.queue import JobQueue, JobRecord, read_jobs
from two4two.cluster.shards import (
    FAILED,
    cut_shards,
    read_cut,
    read_marker,
    shard_dir,
)
from two4two.dataset import PARAMETERS, split_is_complete
from two4two.dataset_folder import read_json_or_none

__all__ = ["SHARD_STATES", "FolderStatus", "folder_status", "format_status"]

SHARD_STATES = ("done", "running", "pending", "failed", "missing")


@dataclasses.dataclass
class FolderStatus:
    """One folder of a dataset (split or intervention set)."""

    dirname: str
    n_samples: int
    complete: bool = False
    """Assembled: the folder is finished, nothing of it is left in shards."""
    counts: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(SHARD_STATES, 0))
    images_done: int = 0
    """Images in finished shards plus those written by running ones."""
    images_per_s: float | None = None
    """Images of finished shards over the wall time from the first start to the last end."""
    errors: list[str] = dataclasses.field(default_factory=list)
    """A line per failed shard."""

    @property
    def eta_s(self) -> float | None:
        if self.complete or not self.images_per_s:
            return None
        return (self.n_samples - self.images_done) / self.images_per_s

    @property
    def all_done(self) -> bool:
        total = sum(self.counts.values())
        return total > 0 and self.counts["done"] == total

    @property
    def n_active(self) -> int:
        """Shards queued or running."""
        return self.counts["running"] + self.counts["pending"]


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def folder_status(output_dir: str | os.PathLike, dirname: str, queue: JobQueue,
                  jobs: dict[tuple[str, int], JobRecord] | None = None,
                  states: dict[str, str] | None = None) -> FolderStatus:
    """The state of the folder ``dirname`` of a dataset in ``output_dir``.

    ``states`` (task id -> 'running'/'pending') saves asking the queue once per folder.
    """
    directory = Path(output_dir) / dirname
    cut = read_cut(output_dir, dirname)
    if split_is_complete(directory):  # (shards an assembly cut short left go next time)
        n = _count_lines(directory / PARAMETERS)
        return FolderStatus(dirname, n, complete=True, images_done=n)
    if cut is None:  # never planned for the cluster
        return FolderStatus(dirname, 0)
    jobs = read_jobs(output_dir) if jobs is None else jobs
    shards = cut_shards(dirname, cut["n_samples"], cut["shard_size"])
    if states is None:
        states = queue.active(r.job_id for r in jobs.values())
    status = FolderStatus(dirname, cut["n_samples"])
    spans: list[tuple[float, float, int]] = []
    for shard in shards:
        folder = shard_dir(output_dir, shard)
        marker = read_marker(folder)
        record = jobs.get((dirname, shard.index))
        if marker is not None and marker.matches(shard):
            state = "done"
            status.images_done += marker.count
            spans.append((marker.started, marker.finished, marker.count))
        elif record is not None and record.job_id in states:
            state = states[record.job_id]
            status.images_done += _count_lines(folder / PARAMETERS)
        elif record is not None or (folder / FAILED).exists():
            state = "failed"
            failure = read_json_or_none(folder / FAILED)
            why = failure.get("error") if isinstance(failure, dict) else \
                "ended without finishing (cancelled, timed out or its node was lost)"
            job = f" (task {record.job_id})" if record is not None else ""
            status.errors.append(f"shard {shard.index}{job}: {why}")
        else:
            state = "missing"
        status.counts[state] += 1
    if spans:
        wall = max(s[1] for s in spans) - min(s[0] for s in spans)
        status.images_per_s = sum(s[2] for s in spans) / wall if wall > 0 else None
    return status


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def format_status(output_dir: str | os.PathLike, rows: Sequence[FolderStatus]) -> str:
    """A table of ``rows`` under a heading naming the dataset folder."""
    header = (f"{'folder':<28} {'shards':>6} {'done':>5} {'run':>5} {'pend':>5} {'fail':>5} "
              f"{'miss':>5} {'images':>15} {'img/s':>7} {'ETA':>8}")
    lines = [f"{output_dir}:", header]
    for row in rows:
        total = sum(row.counts.values())
        rate = f"{row.images_per_s:.2f}" if row.images_per_s else "-"
        if row.complete:
            lines.append(f"{row.dirname:<28} {'complete (assembled)':>36} "
                         f"{f'{row.n_samples}/{row.n_samples}':>15} {'-':>7} {'-':>8}")
            continue
        if total == 0:
            lines.append(f"{row.dirname:<28} not submitted (run with --executor slurm)")
            continue
        c = row.counts
        lines.append(f"{row.dirname:<28} {total:>6} {c['done']:>5} {c['running']:>5} "
                     f"{c['pending']:>5} {c['failed']:>5} {c['missing']:>5} "
                     f"{f'{row.images_done}/{row.n_samples}':>15} {rate:>7} "
                     f"{_duration(row.eta_s):>8}")
        lines += [f"    failed {error}" for error in row.errors[:5]]
        if len(row.errors) > 5:
            lines.append(f"    ... and {len(row.errors) - 5} more failed shards")
    return "\n".join(lines)
