"""Training under SLURM's ``srun`` without ``torchrun`` (docs/slurm.md).

The unit tests check how the SLURM task variables map onto torch.distributed's
(:func:`dubfiv.train.distributed.slurm_environment`); the integration test runs
``srun --ntasks=2 python -m dubfiv.cli.train`` on the single-node test cluster
(the ``slurm_cluster`` fixture) and compares the result with one process, as
tests/dubfiv_tests/test_distributed.py does for ``torchrun``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ddp_check import assert_two_processes_match_one, tiny_ddp_experiment
from slurm_cluster import SlurmCluster

from dubfiv.train.distributed import first_host, slurm_environment
from dubfiv.train.errors import TrainingError

STEP = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
        "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[05,07-08]",
        "SLURM_JOB_ID": "123456"}


def no_scontrol(nodelist: str) -> str | None:
    raise AssertionError(f"scontrol asked for {nodelist!r}")


@pytest.mark.parametrize(("nodelist", "first"), [
    ("vm", "vm"),
    ("node-1,node-2", "node-1"),
    ("node[01-04,7]", "node01"),
    ("gpu[3,1]-ib,cpu1", "gpu3-ib"),
    ("a[1-2]b[3-4]", "a1b3"),
    ("node[1-2", None),
    ("n[[1]]", None),
    ("", None),
])
def test_first_host(nodelist: str, first: str | None) -> None:
    assert first_host(nodelist) == first


def test_srun_task_maps_onto_torch_variables() -> None:
    assert slurm_environment(STEP, expand=no_scontrol) == {
        "RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu07",  # the step's first node: rank 0 runs there
        "MASTER_PORT": "23456",  # 20000 + job id % 10000
    }


def test_given_master_address_and_port_are_kept() -> None:
    env = {**STEP, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    mapped = slurm_environment(env, expand=no_scontrol)
    assert mapped is not None
    assert (mapped["MASTER_ADDR"], mapped["MASTER_PORT"]) == ("10.0.0.1", "29500")


def test_job_node_list_when_the_step_has_none() -> None:
    env = {key: value for key, value in STEP.items() if key != "SLURM_STEP_NODELIST"}
    mapped = slurm_environment(env, expand=no_scontrol)
    assert mapped is not None and mapped["MASTER_ADDR"] == "gpu05"


@pytest.mark.parametrize("env", [
    {**STEP, "WORLD_SIZE": "8"},                                        # torchrun
    {**STEP, "RANK": "0"},                                              # torchrun
    {k: v for k, v in STEP.items() if k != "SLURM_STEP_ID"},            # batch script
    {**STEP, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"},                 # one task
    {},                                                                 # no SLURM
])
def test_not_an_srun_launch(env: dict[str, str]) -> None:
    assert slurm_environment(env, expand=no_scontrol) is None


def test_unreadable_node_list_asks_scontrol() -> None:
    asked = []

    def expand(nodelist: str) -> str | None:
        asked.append(nodelist)
        return "host7"

    mapped = slurm_environment({**STEP, "SLURM_STEP_NODELIST": "odd[1-2"}, expand=expand)
    assert asked == ["odd[1-2"] and mapped is not None and mapped["MASTER_ADDR"] == "host7"
    with pytest.raises(TrainingError, match="set MASTER_ADDR"):
        slurm_environment({**STEP, "SLURM_STEP_NODELIST": "odd[1-2"}, expand=lambda _: None)


@pytest.mark.parametrize(("change", "message"), [
    ({"SLURM_PROCID": "8"}, "outside 0..7"),
    ({"SLURM_NTASKS": "many"}, "malformed"),
    ({"SLURM_JOB_ID": "12_3"}, "set MASTER_PORT"),
])
def test_bad_task_variables_raise(change: dict[str, str], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        slurm_environment({**STEP, **change}, expand=no_scontrol)


def test_srun_two_tasks_match_one_process(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    config, config_file = tiny_ddp_experiment(tmp_path)
    env = {**slurm_cluster.env, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # dubfiv derives them from the SLURM task variables
    command = ["srun", "--ntasks=2", "--cpus-per-task=1", "--nodes=1", "--kill-on-bad-exit=1",
               "--time=10", f"--chdir={tmp_path}",
               sys.executable, "-m", "dubfiv.cli.train", "--experiment", str(config_file),
               "--output_base_dir", str(tmp_path / "ddp"), "--device", "cpu", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_two_processes_match_one(tmp_path / "ddp", config, tmp_path)
