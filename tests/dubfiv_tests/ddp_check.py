"""The two-processes-match-one check shared by the torchrun and srun tests.

The global batch is split across the processes and every random draw is a function
of (seed, step) for the whole global batch, so two processes must reach the same
parameters as one process (up to float summation order).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dubfiv import config as cfg
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import CHECKPOINT, load_checkpoint, train


def tiny_ddp_experiment(tmp_path: Path) -> tuple[cfg.ExperimentConfig, Path]:
    """A tiny experiment on a fake dataset: the config and its saved TOML."""
    write_fake_two4two(tmp_path / "data" / "fake", {"train": 48, "validation": 20},
                       image_size=16, seed=4)
    config = tiny_experiment(tmp_path / "data", n_train_samples=160, val_every_samples=80,
                             checkpoint_every_samples=80, sample_every_samples=160)
    return config, cfg.save_experiment(config, tmp_path / "exp.toml")


def assert_two_processes_match_one(output_base_dir: Path, config: cfg.ExperimentConfig,
                                   tmp_path: Path) -> None:
    """The one run under ``output_base_dir`` (2 processes) equals a single-process run."""
    (run_dir,) = output_base_dir.iterdir()  # one run directory: only rank 0 writes
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
