"""The ``slurm_cluster`` fixture (tests/slurm_cluster.py) runs jobs: a batch array and a step."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from slurm_cluster import SlurmCluster


def test_fixture_exports_its_conf(slurm_cluster: SlurmCluster) -> None:
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)
    assert slurm_cluster.env["SLURM_CONF"] == str(slurm_cluster.conf)
    assert slurm_cluster.cpus >= 1
    result = subprocess.run(["sinfo", "-h", "-n", slurm_cluster.node, "-o", "%T"],
                            capture_output=True, text=True, env=slurm_cluster.env, timeout=60,
                            check=True)
    assert result.stdout.split()[0] in ("idle", "mixed", "allocated")


def test_array_job_runs_both_tasks(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = 'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_JOB_ID" > task-$SLURM_ARRAY_TASK_ID'
    result = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--array=0-1", "--cpus-per-task=1",
         f"--output={tmp_path}/slurm-%A_%a.out", f"--chdir={tmp_path}", f"--wrap={script}"],
        capture_output=True, text=True, env=slurm_cluster.env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split(";")[0]
    for task in (0, 1):
        assert (tmp_path / f"task-{task}").read_text().split() == [str(task), job_id]


def test_srun_step_has_two_ranks(slurm_cluster: SlurmCluster) -> None:
    result = subprocess.run(
        ["srun", "--ntasks=2", "--cpus-per-task=1", "--nodes=1", "sh", "-c",
         'echo "$SLURM_PROCID/$SLURM_NTASKS $SLURM_STEP_NODELIST"'],
        capture_output=True, text=True, env=slurm_cluster.env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines == [f"0/2 {slurm_cluster.node}", f"1/2 {slurm_cluster.node}"]
