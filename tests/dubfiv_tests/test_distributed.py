"""``torchrun --nproc_per_node=2`` on the CPU (gloo): DistributedDataParallel training
matches one process (tests/dubfiv_tests/ddp_check.py says why it must)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_check import assert_two_processes_match_one, tiny_ddp_experiment

from dubfiv.train.distributed import DistContext, all_reduce_sum, setup


def test_single_process_context_is_trivial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = setup("cpu")
    assert context == DistContext() and context.is_main and not context.distributed
    assert torch.equal(all_reduce_sum([1.0, 2.0], context), torch.tensor([1.0, 2.0],
                                                                          dtype=torch.float64))


def test_two_processes_match_one(tmp_path: Path) -> None:
    config, config_file = tiny_ddp_experiment(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "dubfiv.cli.train", "--experiment", str(config_file),
               "--output_base_dir", str(tmp_path / "ddp"), "--device", "cpu", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_two_processes_match_one(tmp_path / "ddp", config, tmp_path)
