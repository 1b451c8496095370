"""``torchrun --nproc_per_node=2`` on the CPU (gloo): DistributedDataParallel training.

The global batch is split across the processes and every random draw is a
function of (seed, step) for the whole global batch, so two processes must reach
the same parameters as one process (up to float summation order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dubfiv import config as cfg
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import CHECKPOINT, load_checkpoint, train
from dubfiv.train.distributed import DistContext, all_reduce_sum, setup


def test_single_process_context_is_trivial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = setup("cpu")
    assert context == DistContext() and context.is_main and not context.distributed
    assert torch.equal(all_reduce_sum([1.0, 2.0], context), torch.tensor([1.0, 2.0],
                                                                          dtype=torch.float64))


def test_two_processes_match_one(tmp_path: Path) -> None:
    write_fake_two4two(tmp_path / "data" / "fake", {"train": 48, "validation": 20},
                       image_size=16, seed=4)
    config = tiny_experiment(tmp_path / "data", n_train_samples=160, val_every_samples=80,
                             checkpoint_every_samples=80, sample_every_samples=160)
    config_file = cfg.save_experiment(config, tmp_path / "exp.toml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "dubfiv.cli.train", "--experiment", str(config_file),
               "--output_base_dir", str(tmp_path / "ddp"), "--device", "cpu", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "ddp").iterdir()  # one run directory: only rank 0 writes
    log = (run_dir / "train.log").read_text()
    assert "2 processes" in log and "parameters identical on all 2 processes" in log
    ddp = load_checkpoint(run_dir / CHECKPOINT)
    assert ddp["samples_seen"] == 160
    assert [r["n"] for r in ddp["history"]["validation"]] == [20, 20]  # whole split, sharded

    torch.set_num_threads(1)
    single = load_checkpoint(train(config, tmp_path / "one", device="cpu", progress=False)
                             / CHECKPOINT)
    for name, value in single["model_state"].items():
        assert torch.allclose(ddp["model_state"][name], value, rtol=1e-3, atol=1e-4), name
    for a, b in zip(single["history"]["validation"], ddp["history"]["validation"], strict=True):
        assert a["bits_per_dim"] == pytest.approx(b["bits_per_dim"], abs=1e-3)
        assert a["head_0_accuracy"] == pytest.approx(b["head_0_accuracy"], abs=0.051)
    for a, b in zip(single["history"]["train"], ddp["history"]["train"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-3)
