"""Atomic writes: the usual permissions, the old file kept when writing fails, no leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from dubfiv.checkpoint import save_checkpoint
from dubfiv.config import load_experiment, save_experiment
from dubfiv.files import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_usual_permissions(tmp_path: Path, umask_027: int) -> None:
    """Not the 0o600 of a temporary file: checkpoints, configs and texts are readable by the
    group as the umask allows."""
    written = [
        atomic_write_text(tmp_path / "a" / "note.txt", "hello"),
        save_checkpoint({"w": torch.zeros(2)}, tmp_path / "models.torch"),
        save_experiment(load_experiment(ROOT / "config" / "small_model.toml"),
                        tmp_path / "experiment.toml"),
    ]
    for path in written:
        assert _mode(path) == umask_027, path
    assert (tmp_path / "a" / "note.txt").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "experiment.toml", "models.torch"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "f.txt", "old")

    def half_write(tmp: Path) -> None:
        tmp.write_text("new but trunc")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_write)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
