"""One array task: render one shard of a folder's plan into the shard's own folder.

:func:`render_shard` runs on a compute node (SLURM starts it through submitit, as
:class:`ShardTask`). It reads its slice of the folder's ``planned.jsonl``, renders
it with the dataset writer's resumable, atomic :func:`~two4two.dataset.render_missing`
into ``.shards/<folder>/<k>/``, checks every PNG, and writes the marker
``done.json`` last. A task that is killed leaves whole files only (and what it
rendered is kept: the next task of the same shard goes on from there); a task
that fails writes ``failed.json`` with the error. A preempted or timed-out task is
requeued by submitit (:class:`ShardTask` is ``Checkpointable``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path

import submitit

from two4two.cluster.shards import (
    DONE,
    FAILED,
    Shard,
    ShardMarker,
    file_sha256,
    read_marker,
    shard_dir,
)
from two4two.dataset import (
    PARAMETERS,
    PLANNED,
    DatasetError,
    RenderFn,
    pooled_renderer,
    render_missing,
    split_is_complete,
)
from two4two.dataset_config import DatasetConfig
from two4two.dataset_folder import write_json
from two4two.locking import FolderLock, FolderLockedError
from two4two.scene_parameters import SceneParameters, load_jsonl, write_jsonl
from two4two.verify import bad_images, image_problem

__all__ = ["SHARD_LOCK", "ShardJob", "ShardLockedError", "ShardTask", "render_shard",
           "task_resources"]

SHARD_LOCK = ".two4two_shard.lock"
LOCK_WAIT_S = 120.0
"""How long a task waits for another holder of its shard's lock before it gives up."""


class ShardLockedError(DatasetError, FolderLockedError):
    """Another task is rendering the same shard."""


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """What one array task gets (pickled by submitit): the dataset and its shard."""

    config: DatasetConfig
    shard: Shard

    @property
    def folder(self) -> Path:
        return shard_dir(self.config.output_dir, self.shard)

    @property
    def plan_path(self) -> Path:
        return Path(self.config.output_dir) / self.shard.dirname / PLANNED


def read_plan_slice(path: Path, start: int, stop: int) -> list[SceneParameters]:
    """Scenes ``[start, stop)`` of a ``planned.jsonl`` (only those lines are parsed)."""
    try:
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the plan ({error}); submit again from the "
                           "dataset's folder") from None
    if len(lines) < stop:
        raise DatasetError(f"{path} holds {len(lines)} scenes, but this shard needs "
                           f"[{start}, {stop}); the plan changed: submit again")
    return [SceneParameters.load(json.loads(line)) for line in lines[start:stop]]


def task_resources(config: DatasetConfig) -> tuple[int, int]:
    """``(worker processes, Cycles threads each)`` for this task. On the CPU: one worker
    per CPU that SLURM gave the task (``SLURM_CPUS_PER_TASK``; the config's
    ``n_processes`` may ask for fewer, never more), else per available core; on a GPU:
    ``n_processes``, else one worker per visible GPU (``CUDA_VISIBLE_DEVICES``)."""
    from two4two.blender import available_cores

    allotted = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    cpus = allotted or available_cores()
    if config.render_device == "cpu":
        workers = min(config.n_processes or cpus, cpus)
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        workers = config.n_processes or len([d for d in visible.split(",") if d.strip()]) or 1
    return workers, max(1, cpus // workers)


def _job_id() -> str | None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def render_shard(job: ShardJob, render_fn: RenderFn | None = None,
                 progress: bool = False) -> ShardMarker | None:
    """Render ``job``'s shard (resuming what an earlier task of it left) and mark it done.

    Images the folder itself already holds (a complete folder being repaired, or an
    assembly that found a bad file) are linked in rather than rendered again.

    Args:
        job: the dataset config and the shard.
        render_fn: the renderer (tests pass a fake); default: a Blender pool sized by
            :func:`task_resources`.
        progress: show a progress bar (the task's log).

    Returns:
        the shard's marker (also written to ``done.json``), or ``None`` if its folder
        is complete already (a stale task: nothing is written).

    Raises:
        ShardLockedError: another task renders this shard right now.
        DatasetError: the plan changed, or a rendered file fails to verify.
    """
    folder = job.folder
    if split_is_complete(job.plan_path.parent):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with _shard_lock(folder):
        marker = read_marker(folder)  # read under the lock: another task may have finished
        if marker is not None and marker.matches(job.shard):
            return marker
        try:
            return _render_locked(job, render_fn, progress)
        except Exception as error:
            write_json(folder / FAILED, {
                "error": " ".join(f"{type(error).__name__}: {error}".split()),
                "traceback": traceback.format_exc(), "host": socket.gethostname(),
                "job_id": _job_id(), "time": time.time()})
            raise


def _shard_lock(folder: Path, wait_s: float = LOCK_WAIT_S) -> FolderLock:
    """The shard's lock, taken; waits up to ``wait_s`` for a holder to let go (a task
    requeued after preemption may start before its first run has finished dying)."""
    deadline = time.monotonic() + wait_s
    while True:
        lock = FolderLock(folder, name=SHARD_LOCK, purpose="rendering a shard",
                          error=ShardLockedError)
        try:
            lock.acquire()
            return lock
        except ShardLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def _render_locked(job: ShardJob, render_fn: RenderFn | None, progress: bool) -> ShardMarker:
    folder, shard, config = job.folder, job.shard, job.config
    (folder / FAILED).unlink(missing_ok=True)
    started = time.time()
    scenes = read_plan_slice(job.plan_path, shard.start, shard.stop)
    _adopt_finished(folder, job.plan_path.parent, scenes)
    workers, threads = task_resources(config)
    if render_fn is not None:
        render_missing(folder, scenes, config, render_fn, progress)
    else:
        with pooled_renderer(config, n_processes=workers, threads=threads) as pooled:
            render_missing(folder, scenes, config, pooled, progress)
    recorded = load_jsonl(folder / PARAMETERS)
    if [p.id for p in recorded] != [p.id for p in scenes]:
        raise DatasetError(f"{folder / PARAMETERS} does not list the shard's scenes in plan "
                           "order; delete the shard's folder and submit again")
    bad = bad_images(folder, recorded)
    if bad:
        name, (_, problem) = next(iter(bad.items()))
        for bad_name in bad:
            (folder / bad_name).unlink(missing_ok=True)
        raise DatasetError(f"{folder / name}: {problem} (and {len(bad) - 1} more); the task "
                           "removed them: submit again")
    names = [n for p in recorded for n in (p.filename, p.mask_filename)] + [PARAMETERS]
    marker = ShardMarker(
        dirname=shard.dirname, index=shard.index, start=shard.start, stop=shard.stop,
        count=len(recorded), files={n: file_sha256(folder / n) for n in names},
        started=started, finished=time.time(), host=socket.gethostname(), job_id=_job_id(),
        workers=workers)
    write_json(folder / DONE, dataclasses.asdict(marker))
    return marker


def _adopt_finished(folder: Path, directory: Path, scenes: list[SceneParameters]) -> None:
    """Link into the shard folder the images of ``scenes`` that ``directory`` (the folder
    being rendered) already holds intact, so that only the others are rendered. When
    any are adopted, every scene is recorded, as the writer does for scenes whose files
    went missing: :func:`~two4two.dataset.render_missing` then renders exactly those."""
    adopted = 0
    for scene in scenes:
        size = (int(scene.resolution[0]), int(scene.resolution[1]))
        for name, mode in ((scene.filename, "RGB"), (scene.mask_filename, "L")):
            source, target = directory / name, folder / name
            if target.exists() or not source.is_file() or image_problem(source, size, mode):
                continue
            try:
                os.link(source, target)
            except OSError:  # a file system without hard links
                shutil.copy2(source, target)
            adopted += 1
    if adopted and not (folder / PARAMETERS).exists():
        write_jsonl(folder / PARAMETERS, scenes)


class ShardTask(submitit.helpers.Checkpointable):
    """The callable submitit runs per array task; requeued on preemption or timeout
    (the shard then goes on from the files already written)."""

    def __call__(self, job: ShardJob) -> dict | None:
        marker = render_shard(job, progress=False)
        return None if marker is None else dataclasses.asdict(marker)
