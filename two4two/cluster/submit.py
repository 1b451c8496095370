"""Render a dataset as a SLURM job array: plan, cut into shards, submit, follow, assemble.

:func:`submit_dataset` plans every folder of a dataset up front (as a local render
does), cuts each plan into shards and submits the shards that are neither done nor
queued as one array through submitit; folders whose shards are all done are
assembled first, so the same call, repeated, finishes the dataset.
:func:`wait_for_dataset` follows the array with a progress bar and assembles.
:func:`dataset_status` reports and assembles what is done (``docs/cluster_render.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from two4two.bias import Sampler
from two4two.cluster.assemble import assemble_folder, remove_shards_if_done
from two4two.cluster.queue import (
    JOBS,
    HandleQueue,
    JobQueue,
    SlurmQueue,
    read_jobs,
    record_jobs,
)
from two4two.cluster.settings import DEFAULT_SHARD_SIZE, SlurmSettings
from two4two.cluster.shards import (
    SHARDS,
    Shard,
    cut_shards,
    folder_shards_dir,
    read_cut,
    read_marker,
    shard_dir,
    write_cut,
)
from two4two.cluster.status import FolderStatus, folder_status
from two4two.cluster.task import ShardJob, ShardTask
from two4two.dataset import LOCK, DatasetError, DatasetLockedError
from two4two.dataset_config import DatasetConfig
from two4two.dataset_plan import DirPlan, iter_dataset_dirs, plan_dataset
from two4two.locking import FolderLock

__all__ = [
    "ShardsFailedError",
    "Submission",
    "SubmitError",
    "assemble_finished",
    "dataset_status",
    "submit_dataset",
    "wait_for_dataset",
]

SUBMITIT_FOLDER = "submitit"
"""``.shards/submitit``: submitit's scripts, pickles and the tasks' logs."""


class ShardsFailedError(DatasetError):
    """Some shards ended without finishing; the same command submits them again."""


class SubmitError(DatasetError):
    """``sbatch`` is missing or refused the array (the message has its last line)."""


@dataclasses.dataclass
class Submission:
    """What :func:`submit_dataset` did."""

    output_dir: Path
    submitted: list[Shard]
    job_ids: list[str]
    assembled: list[Path]
    """Folders finished by this call (their shards were all done)."""
    complete: list[Path]
    """Every folder of the dataset that is finished now."""
    folders: list[str]
    """Every folder of the dataset, in render order."""
    queue: JobQueue

    @property
    def array_id(self) -> str | None:
        return self.job_ids[0].split("_", 1)[0] if self.job_ids else None


def _shards_of(plan: DirPlan, output_dir: Path, shard_size: int | None,
               progress: bool) -> list[Shard]:
    """The shards of ``plan``'s folder: cut now, or as recorded when it was first cut (the
    cut of a folder never changes, so that finished shards stay valid). ``shard_size``
    ``None``: whatever was recorded, else the default."""
    dirname = plan.directory.name
    cut = read_cut(output_dir, dirname)
    if cut is None:
        shard_size = shard_size or DEFAULT_SHARD_SIZE
        write_cut(output_dir, dirname, plan.n_samples, shard_size)
        cut = {"n_samples": plan.n_samples, "shard_size": shard_size}
    elif cut["n_samples"] != plan.n_samples:
        raise DatasetError(f"{output_dir / SHARDS / dirname} was cut for {cut['n_samples']} "
                           f"scenes, the plan has {plan.n_samples}; delete that folder")
    elif shard_size is not None and cut["shard_size"] != shard_size and progress:
        tqdm.write(f"two4two: {dirname} was cut into shards of {cut['shard_size']} scenes "
                   f"when first submitted; keeping that (not {shard_size})")
    return cut_shards(dirname, cut["n_samples"], cut["shard_size"])


def check_sbatch() -> None:
    """Raise :class:`SubmitError` unless ``sbatch`` is on PATH."""
    if shutil.which("sbatch") is None:
        raise SubmitError("sbatch is not on PATH: submit from a login node of the SLURM "
                          "cluster, or render here with --executor local")


def _submit(executor: Any, jobs: list[ShardJob], output_dir: Path) -> list[Any]:
    """``executor.map_array`` over ``jobs``; an ``sbatch`` that refuses becomes one line
    (and a ``.shards/`` that never had a task is removed again)."""
    from submitit.core.utils import FailedJobError

    try:
        # submitit prints sbatch's complaint to stderr as well: it goes into the one line
        with contextlib.redirect_stderr(io.StringIO()):
            return executor.map_array(ShardTask(), jobs)
    except (FailedJobError, OSError) as error:
        if not (output_dir / SHARDS / JOBS).exists():
            shutil.rmtree(output_dir / SHARDS, ignore_errors=True)
        lines = [line for line in str(error).splitlines() if line.strip()]
        last = lines[-1] if lines else repr(error)
        raise SubmitError(f"submitting the array failed: {last}; check "
                          "--slurm-partition/--slurm-account and the cluster (sinfo)") from None


def make_slurm_executor(output_dir: Path, settings: SlurmSettings, name: str) -> Any:
    """A submitit ``SlurmExecutor`` writing into ``.shards/submitit`` with ``settings``."""
    import submitit

    executor = submitit.SlurmExecutor(folder=output_dir / SHARDS / SUBMITIT_FOLDER,
                                      max_num_timeout=3)
    executor.update_parameters(job_name=name, **settings.executor_parameters())
    return executor


def _queue_for(executor: Any, jobs: dict[str, Any]) -> JobQueue:
    import submitit

    if executor is None or isinstance(executor, submitit.SlurmExecutor):
        return SlurmQueue()
    return HandleQueue(jobs)


def submit_dataset(config: DatasetConfig, *, settings: SlurmSettings | None = None,
                   executor: Any = None, sampler: Sampler | None = None,
                   progress: bool = True, queue: JobQueue | None = None) -> Submission:
    """Plan ``config``, assemble the folders whose shards are done, and submit one array
    task per shard that is neither done nor queued.

    Args:
        config: the dataset.
        settings: resources of each task and the shard size (default ``config.slurm``).
        executor: a submitit executor (default: a ``SlurmExecutor`` built from
            ``settings``; tests pass a ``LocalExecutor``).
        sampler: draw with this sampler instead of the config's.
        progress: show the planning's progress bars.
        queue: what says which tasks are still queued (default: ``squeue`` for SLURM,
            the job handles for other executors).

    Raises:
        DatasetLockedError: another process renders or submits into the same folder.
        DatasetError: the folder conflicts with the config, a shard's files do not
            match its marker, or the config sets ``force_overwrite``.
        two4two.cluster.queue.QueueError: ``squeue`` cannot be asked.
    """
    settings = settings or config.slurm
    output_dir = Path(config.output_dir)
    if config.force_overwrite:
        raise DatasetError(
            f"{output_dir}: force_overwrite = true would delete the dataset at every "
            "resubmission and status call of a cluster render; remove it from the config "
            "(delete the folder by hand to start over)")
    if executor is None:
        check_sbatch()
    given_queue = queue
    queue = queue or _queue_for(executor, {})
    with FolderLock(output_dir, name=LOCK, purpose="planning a cluster render",
                    error=DatasetLockedError):
        plans = list(plan_dataset(config, sampler, progress))
        todo, assembled, complete = _todo_and_assemble(plans, output_dir,
                                                       settings.shard_size, queue, progress)
        jobs: list[Any] = []
        if todo:
            if executor is None:
                executor = make_slurm_executor(output_dir, settings,
                                               f"two4two-{output_dir.name}")
            jobs = _submit(executor, [ShardJob(config, s) for s in todo], output_dir)
        job_ids = [str(job.job_id) for job in jobs]
        record_jobs(output_dir, todo, job_ids)
        if len(complete) == len(plans):
            remove_shards_if_done(output_dir)
    return Submission(output_dir, todo, job_ids, assembled, complete,
                      [p.directory.name for p in plans],
                      given_queue or _queue_for(executor, dict(zip(job_ids, jobs, strict=True))))


def assemble_finished(config: DatasetConfig, queue: JobQueue | None = None,
                      sampler: Sampler | None = None, progress: bool = False) -> list[Path]:
    """Assemble every folder of ``config`` whose shards are all done (nothing is
    submitted); returns the folders finished by this call. Trusts folders already
    complete (the submit command verifies them) and never deletes a folder, whatever
    ``force_overwrite`` says."""
    output_dir = Path(config.output_dir)
    config = dataclasses.replace(config, force_overwrite=False)
    with FolderLock(output_dir, name=LOCK, purpose="assembling a cluster render",
                    error=DatasetLockedError):
        plans = list(plan_dataset(config, sampler, progress, verify=False))
        _, assembled, complete = _todo_and_assemble(plans, output_dir, None,
                                                    queue or SlurmQueue(), progress)
        if len(complete) == len(plans):
            remove_shards_if_done(output_dir)
    return assembled


def _todo_and_assemble(plans: list[DirPlan], output_dir: Path, shard_size: int | None,
                       queue: JobQueue, progress: bool
                       ) -> tuple[list[Shard], list[Path], list[Path]]:
    """The shards to submit (neither done nor queued), and the folders assembled now and
    complete after this call. A folder already cut keeps its shard size."""
    jobs = read_jobs(output_dir)
    states = queue.active(r.job_id for r in jobs.values()) if jobs else {}
    todo: list[Shard] = []
    assembled: list[Path] = []
    complete: list[Path] = []
    for plan in plans:
        if plan.planned is None:  # complete (an assembly cut short may have left its shards)
            shutil.rmtree(folder_shards_dir(output_dir, plan.directory.name), ignore_errors=True)
            complete.append(plan.directory)
            continue
        shards = _shards_of(plan, output_dir, shard_size, progress)
        not_done = [s for s in shards if not _is_done(output_dir, s)]
        if not not_done:
            assemble_folder(output_dir, plan, shards, progress)
            assembled.append(plan.directory)
            complete.append(plan.directory)
            continue
        for shard in not_done:
            record = jobs.get((shard.dirname, shard.index))
            if record is None or record.job_id not in states:
                todo.append(shard)
    return todo, assembled, complete


def _is_done(output_dir: Path, shard: Shard) -> bool:
    marker = read_marker(shard_dir(output_dir, shard))
    return marker is not None and marker.matches(shard)


def dataset_status(config: DatasetConfig, queue: JobQueue | None = None,
                   assemble: bool = True, sampler: Sampler | None = None,
                   progress: bool = False) -> list[FolderStatus]:
    """Per folder of ``config``: shards done / running / pending / failed / missing,
    images/s and ETA. With ``assemble``, folders whose shards are all done are
    assembled first (taking the dataset's lock)."""
    output_dir = Path(config.output_dir)
    queue = queue or SlurmQueue()
    jobs = read_jobs(output_dir)
    states = queue.active(r.job_id for r in jobs.values()) if jobs else {}
    names = [p.name for p in iter_dataset_dirs([config])]
    rows = [folder_status(output_dir, name, queue, jobs, states) for name in names]
    if assemble and any(r.all_done for r in rows):
        assemble_finished(config, queue, sampler, progress)
        rows = [folder_status(output_dir, name, queue, jobs, states)
                for name in names]
    return rows


def wait_for_dataset(config: DatasetConfig, submission: Submission, poll_s: float = 10.0,
                     progress: bool = True, sampler: Sampler | None = None) -> list[Path]:
    """Follow the array with a progress bar until no shard is queued or running, then
    assemble. Returns every folder of the dataset.

    Raises:
        ShardsFailedError: some shards ended without finishing (the message says which
            and how to resubmit).
    """
    output_dir = Path(config.output_dir)
    names = submission.folders
    jobs = read_jobs(output_dir)
    states = submission.queue.active(r.job_id for r in jobs.values()) if jobs else {}
    total = sum(row.n_samples for row in
                (folder_status(output_dir, n, submission.queue, jobs, states) for n in names)
                if not row.complete)
    array = f" (array {submission.array_id})" if submission.array_id else ""
    bar = tqdm(total=total, desc=f"{output_dir.name}{array}",
               unit="img", disable=not progress)
    with bar:
        while True:
            jobs = read_jobs(output_dir)
            states = submission.queue.active(r.job_id for r in jobs.values()) if jobs else {}
            rows = [folder_status(output_dir, n, submission.queue, jobs, states)
                    for n in names]
            bar.n = sum(r.images_done for r in rows if not r.complete)
            bar.refresh()
            if not any(r.n_active for r in rows):
                break
            time.sleep(poll_s)
    rows = dataset_status(config, submission.queue, assemble=True, sampler=sampler)
    failed = [f"{r.dirname} {e}" for r in rows for e in r.errors]
    if failed:
        raise ShardsFailedError(
            f"{len(failed)} shard(s) of {output_dir} did not finish (e.g. {failed[0]}); "
            "rerun the same command to submit them again (logs: "
            f"{output_dir / SHARDS / SUBMITIT_FOLDER})")
    missing = [r.dirname for r in rows if not r.complete]
    if missing:
        raise ShardsFailedError(f"{output_dir}: {', '.join(missing)} not finished; rerun the "
                                "same command to submit what is missing")
    return [output_dir / n for n in names]
