"""A real job array on the private single-node SLURM cluster (``slurm_cluster``):
submit a small dataset through sbatch (submitit), ``scancel`` one task in the middle
of its shard, resubmit, and compare the assembled dataset with a local render of the
same config, byte for byte and id for id. Skips only where SLURM cannot start."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from cluster_fakes import ids_of, tree_digest
from private_daemon import log_tail
from two4two_fakes import write_config

from two4two import cli_tool
from two4two.cluster.queue import SlurmQueue, read_jobs
from two4two.cluster.shards import DONE, SHARDS, shard_dir
from two4two.cluster.submit import (
    SUBMITIT_FOLDER,
    ShardsFailedError,
    dataset_status,
    submit_dataset,
    wait_for_dataset,
)
from two4two.dataset import PARAMETERS
from two4two.dataset_config import load_dataset_configs
from two4two.scene_parameters import load_jsonl
from two4two.verify import bad_images

pytest.importorskip("bpy")

SPLITS = """
resolution = [64, 64]
render_samples = 32
n_processes = 1
[[dataset.split]]
name = "train"
n_samples = 12
[[dataset.split]]
name = "test"
n_samples = 4
interventions = [["obj_color"]]
"""


def _cancel_one_mid_shard(output_dir: Path, submission, timeout_s: float = 180.0) -> str:
    """``scancel`` the first task seen with part of its shard written; its task id."""
    jobs = read_jobs(output_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for shard in submission.submitted:
            folder = shard_dir(output_dir, shard)
            params = folder / PARAMETERS
            lines = params.read_bytes().count(b"\n") if params.is_file() else 0
            if 1 <= lines < shard.count and not (folder / DONE).exists():
                job_id = jobs[(shard.dirname, shard.index)].job_id
                subprocess.run(["scancel", job_id], check=True, timeout=30)
                return job_id
        time.sleep(0.05)
    pytest.fail("no task was seen in the middle of its shard")


def _wait_until_out_of_queue(job_ids: list[str], timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while SlurmQueue().active(job_ids):
        assert time.monotonic() < deadline, "the array is still in the queue"
        time.sleep(0.5)


def test_a_slurm_array_cancelled_and_resubmitted_equals_the_local_render(
        slurm_cluster, tmp_path: Path, capsys) -> None:
    local = write_config(tmp_path / "local.toml", tmp_path / "local", splits=SPLITS)
    cluster_file = write_config(tmp_path / "cluster.toml", tmp_path / "cluster",
                                splits=SPLITS)
    cli_tool.render_dataset(local, progress=False)
    (config,) = load_dataset_configs(cluster_file)
    settings = config.slurm.replace(shard_size=6, cpus_per_task=1, time=10)

    first = submit_dataset(config, settings=settings, progress=False)
    assert [(s.dirname, s.start, s.stop) for s in first.submitted] == [
        ("train", 0, 6), ("train", 6, 12), ("test", 0, 4), ("test_obj_color", 0, 4)]
    cancelled = _cancel_one_mid_shard(Path(config.output_dir), first)
    _wait_until_out_of_queue(first.job_ids)

    rows = {r.dirname: r for r in dataset_status(config, assemble=False)}
    assert sum(r.counts["failed"] for r in rows.values()) == 1
    assert sum(r.counts["done"] for r in rows.values()) == 3
    failed = next(s for s in first.submitted
                  if read_jobs(config.output_dir)[(s.dirname, s.index)].job_id == cancelled)
    folder = shard_dir(config.output_dir, failed)
    written = [line for line in (folder / PARAMETERS).read_text().splitlines() if line]
    assert 1 <= len(written) < failed.count and not (folder / DONE).exists()
    assert bad_images(folder, load_jsonl(folder / PARAMETERS)) == {}  # whole files only
    assert cli_tool.main([str(cluster_file), "--status"]) == 0
    table = capsys.readouterr().out
    # killed outright ("ended without finishing"), or its Blender worker first (the error)
    assert f"failed shard {failed.index} (task {cancelled}): " in table

    second = submit_dataset(config, settings=settings, progress=False)
    assert second.submitted == [failed]
    written_dirs = wait_for_dataset(config, second, poll_s=0.5, progress=False)
    assert [p.name for p in written_dirs] == ["train", "test", "test_obj_color"]
    assert not (Path(config.output_dir) / ".shards").exists()
    assert tree_digest(tmp_path / "local") == tree_digest(tmp_path / "cluster")
    for name in ("train", "test", "test_obj_color"):
        assert ids_of(tmp_path / "local" / name) == ids_of(tmp_path / "cluster" / name)


def test_a_preempted_task_is_requeued_and_goes_on_from_its_files(slurm_cluster,
                                                                  tmp_path: Path) -> None:
    """SIGUSR2 is what SLURM sends before preempting or timing out a task: submitit
    requeues it (the task is Checkpointable), and the requeued task keeps the images
    its first run wrote."""
    splits = SPLITS.replace("n_samples = 12", "n_samples = 10").split("[[dataset.split]]\n"
                                                                     'name = "test"')[0]
    (config,) = load_dataset_configs(write_config(tmp_path / "c.toml", tmp_path / "data",
                                                  splits=splits))
    submission = submit_dataset(config, settings=config.slurm.replace(shard_size=10),
                                progress=False)
    (shard,) = submission.submitted
    (job_id,) = submission.job_ids
    folder = shard_dir(config.output_dir, shard)
    deadline = time.monotonic() + 180
    while not (folder / PARAMETERS).is_file() or \
            (folder / PARAMETERS).read_bytes().count(b"\n") < 2:
        assert time.monotonic() < deadline and not (folder / DONE).exists()
        time.sleep(0.05)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    first = load_jsonl(folder / PARAMETERS)[:2]
    written_at = {p.filename: (folder / p.filename).stat().st_mtime_ns for p in first}
    # A requeued job waits (BeginTime) before it starts again; let it start 2 s after the
    # requeue, not at once: slurmd refuses a job whose credential it revoked in the same
    # second ("Job 1 already killed, do not launch batch job", seen here about once in 4
    # runs), and the job then ends without running. (StartTime=now+2 would wait for the
    # scheduler's next periodic pass instead, about 25 s here.)
    while True:
        state = subprocess.run(["squeue", "--noheader", "--jobs", job_id, "--format=%T %r"],
                               capture_output=True, text=True, timeout=30).stdout
        if "BeginTime" in state:
            time.sleep(2)
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                           check=True, timeout=30)
            break
        assert time.monotonic() < deadline, f"not requeued: {state!r}"
        time.sleep(0.2)
    try:
        (train,) = wait_for_dataset(config, submission, poll_s=0.5, progress=False)
    except ShardsFailedError as error:  # say what SLURM did with the requeued job
        logs = "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(
            (Path(config.output_dir) / SHARDS / SUBMITIT_FOLDER).glob("*_log.*")))
        pytest.fail(f"{error}\n{logs}\n{log_tail(slurm_cluster.directory, lines=60)}")
    assert (train / PARAMETERS).read_bytes().count(b"\n") == 10
    assert {name: (train / name).stat().st_mtime_ns for name in written_at} == written_at


def test_sbatch_refusing_the_array_is_one_line_and_leaves_no_shards(
        slurm_cluster, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "data", splits=SPLITS)
    assert cli_tool.main([str(config), "--executor", "slurm", "--no-progress",
                          "--slurm-partition", "no_such_partition"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "submitting the array failed" in err and "partition" in err
    assert not (tmp_path / "data" / ".shards").exists()
