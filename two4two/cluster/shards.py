"""Shards: contiguous slices of a folder's plan, one per SLURM array task.

A folder of a dataset (a split or an intervention set) with ``n`` planned scenes
is cut into shards of ``shard_size`` scenes: shard ``k`` renders scenes
``[k * shard_size, (k + 1) * shard_size)`` of ``planned.jsonl``. Each shard
renders into a folder of its own, so that no two tasks write the same file::

    <output_dir>/.shards/<folder>/cut.json          shard_size and n_samples
    <output_dir>/.shards/<folder>/<k:05d>/          the shard's PNGs, parameters.jsonl
    <output_dir>/.shards/<folder>/<k:05d>/done.json its marker (written last)
    <output_dir>/.shards/<folder>/<k:05d>/failed.json  the error, if the task failed

A finished shard's marker holds the count and the SHA-256 of every file, so that
assembly can check what it moves (``docs/cluster_render.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from two4two.dataset_folder import read_json_or_none, write_json

__all__ = ["CUT", "DONE", "FAILED", "SHARDS", "Shard", "ShardMarker", "cut_shards",
           "file_sha256", "folder_shards_dir", "read_cut", "read_marker", "shard_dir",
           "write_cut"]

SHARDS = ".shards"
CUT = "cut.json"
DONE = "done.json"
FAILED = "failed.json"


@dataclasses.dataclass(frozen=True)
class Shard:
    """Scenes ``[start, stop)`` of the plan of the folder ``dirname``; shard ``index``."""

    dirname: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    @property
    def count(self) -> int:
        return self.stop - self.start


def cut_shards(dirname: str, n_samples: int, shard_size: int) -> list[Shard]:
    """Cut ``n_samples`` planned scenes into shards of ``shard_size`` (the last may be
    shorter)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [Shard(dirname, k, start, min(start + shard_size, n_samples))
            for k, start in enumerate(range(0, n_samples, shard_size))]


def folder_shards_dir(output_dir: str | os.PathLike, dirname: str) -> Path:
    """``<output_dir>/.shards/<dirname>``."""
    return Path(output_dir) / SHARDS / dirname


def shard_dir(output_dir: str | os.PathLike, shard: Shard) -> Path:
    """``<output_dir>/.shards/<dirname>/<index:05d>``: where the shard renders."""
    return folder_shards_dir(output_dir, shard.dirname) / shard.name


def write_cut(output_dir: str | os.PathLike, dirname: str, n_samples: int,
              shard_size: int) -> None:
    write_json(folder_shards_dir(output_dir, dirname) / CUT,
               {"n_samples": n_samples, "shard_size": shard_size})


def read_cut(output_dir: str | os.PathLike, dirname: str) -> dict[str, int] | None:
    """``{"n_samples", "shard_size"}`` of a folder already cut into shards, else ``None``."""
    cut = read_json_or_none(folder_shards_dir(output_dir, dirname) / CUT)
    return cut if isinstance(cut, dict) else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ShardMarker:
    """What a finished shard wrote (``done.json``); times are Unix seconds."""

    dirname: str
    index: int
    start: int
    stop: int
    count: int
    files: dict[str, str]
    """File name -> SHA-256 of every PNG and of ``parameters.jsonl``."""
    started: float
    finished: float
    host: str
    job_id: str | None = None
    workers: int = 1
    """Render worker processes the task used."""

    def matches(self, shard: Shard) -> bool:
        """Whether this marker is the finished ``shard`` (same place in the same plan)."""
        return (self.dirname, self.index, self.start, self.stop, self.count) == \
            (shard.dirname, shard.index, shard.start, shard.stop, shard.count)


def read_marker(folder: Path) -> ShardMarker | None:
    """The marker in a shard folder, or ``None`` if there is none (or it is damaged)."""
    data = read_json_or_none(folder / DONE)
    if not isinstance(data, dict):
        return None
    try:
        return ShardMarker(**data)
    except TypeError:
        return None
