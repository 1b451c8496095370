"""Assembly: move the finished shards of a folder into it, exactly as a local render
writes the folder.

The shards' PNGs are moved (a rename, on the same file system) into the folder
after their SHA-256 is checked against the marker; ``parameters.jsonl`` is the
shards' own files joined in plan order (the same bytes a local render appends,
line by line); then the folder is marked complete (``split_args.json``), its
``planned.jsonl`` removed and every image and mask opened. Assembly can be
interrupted and run again: a file already moved is recognised by its checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from two4two.cluster.shards import (
    CUT,
    DONE,
    SHARDS,
    Shard,
    ShardMarker,
    file_sha256,
    folder_shards_dir,
    read_marker,
    shard_dir,
)
from two4two.cluster.task import SHARD_LOCK, ShardLockedError
from two4two.dataset import PARAMETERS, DatasetError
from two4two.dataset_plan import DirPlan, finish_split
from two4two.files import atomic_write_bytes
from two4two.locking import FolderLock
from two4two.scene_parameters import SceneParameters
from two4two.verify import bad_images

__all__ = ["assemble_folder", "remove_shards_if_done"]


def _move_checked(source: Path, target: Path, sha256: str) -> None:
    """Move ``source`` to ``target`` if its checksum is ``sha256``; a ``target`` that is
    already there with that checksum (an earlier, interrupted assembly) is fine."""
    if source.is_file():
        if file_sha256(source) != sha256:
            raise DatasetError(f"{source} does not match its shard's checksum (changed after "
                               "the task finished); delete the shard's folder and submit again")
        os.replace(source, target)
    elif not (target.is_file() and file_sha256(target) == sha256):
        raise DatasetError(f"{source} is missing (and {target} is not it); delete the "
                           "shard's folder and submit again")


def _shard_parameters(folder: Path, marker: ShardMarker, shard: Shard,
                      planned_ids: Sequence[str]) -> bytes:
    """The bytes of a shard's ``parameters.jsonl``, checked against its marker and the plan."""
    path = folder / PARAMETERS
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != marker.files.get(PARAMETERS):
        raise DatasetError(f"{path} does not match its marker; delete the shard's folder "
                           "and submit again")
    ids = [json.loads(line)["id"] for line in data.split(b"\n") if line.strip()]
    if ids != list(planned_ids[shard.start:shard.stop]):
        raise DatasetError(f"{path} is not scenes [{shard.start}, {shard.stop}) of the plan; "
                           "delete the shard's folder and submit again")
    return data


def assemble_folder(output_dir: str | os.PathLike, plan: DirPlan, shards: Sequence[Shard],
                    progress: bool = False) -> None:
    """Move every shard of ``plan``'s folder into it, verify it, mark it complete, then
    delete ``.shards/<folder>``. Every shard must be done (hold the dataset's lock);
    each shard's lock is held while it is moved, so that no stale task writes into it.

    Raises:
        DatasetError: a shard is not done or still locked by a task, a file does not
            match its checksum, or a moved image fails to open (its shard is then
            marked not done, so that the next submission renders it again).
    """
    assert plan.planned is not None
    directory = plan.directory
    planned_ids = [p.id for p in plan.planned]
    parts: list[bytes] = []
    with contextlib.ExitStack() as locks:
        for shard in shards:
            folder = shard_dir(output_dir, shard)
            locks.enter_context(FolderLock(folder, name=SHARD_LOCK, purpose="assembling",
                                           error=ShardLockedError))
            marker = read_marker(folder)
            if marker is None or not marker.matches(shard):
                raise DatasetError(f"{folder}: the shard is not done; render it first")
            parts.append(_shard_parameters(folder, marker, shard, planned_ids))
            for name, sha256 in marker.files.items():
                if name != PARAMETERS:
                    _move_checked(folder / name, directory / name, sha256)
        _verify_moved(output_dir, directory, plan.planned, shards, progress)
    atomic_write_bytes(directory / PARAMETERS, b"".join(parts))
    finish_split(directory, plan.args, plan.n_samples)
    shutil.rmtree(folder_shards_dir(output_dir, directory.name), ignore_errors=True)


def _verify_moved(output_dir: str | os.PathLike, directory: Path,
                  planned: Sequence[SceneParameters], shards: Sequence[Shard],
                  progress: bool) -> None:
    """Open every moved image; remove those that fail and unmark their shards."""
    bad = bad_images(directory, planned, progress)
    if not bad:
        return
    position = {p.id: i for i, p in enumerate(planned)}
    for name, (scene, _) in bad.items():
        (directory / name).unlink(missing_ok=True)
        shard = next(s for s in shards if s.start <= position[scene.id] < s.stop)
        (shard_dir(output_dir, shard) / DONE).unlink(missing_ok=True)
    name, (_, problem) = next(iter(bad.items()))
    raise DatasetError(f"{directory / name}: {problem}, after assembly ({len(bad)} file(s) "
                       "fail); they are removed and their shards marked not done: submit "
                       "again (--executor slurm) to render them")


def remove_shards_if_done(output_dir: str | os.PathLike) -> None:
    """Delete ``<output_dir>/.shards`` once no folder in it is cut into shards (the
    submitit logs go with it): a finished dataset looks as a local render left it."""
    root = Path(output_dir) / SHARDS
    if not root.is_dir():
        return
    if not any((p / CUT).exists() for p in root.iterdir() if p.is_dir()):
        shutil.rmtree(root, ignore_errors=True)
