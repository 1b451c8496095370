"""Training loses nothing to a kill, a signal, a full disk or a second trainer (issue 17).

* one trainer per run folder (``.dubfiv_train.lock``): a second ``--resume`` fails in
  one line naming the holder; after ``kill -9`` of the holder, ``--resume`` works;
* a checkpoint at the start (step 0), on SIGTERM / SIGUSR1 / SIGINT (exit 128 + signal)
  and every ``train.checkpoint_every_minutes``; a run killed before its first checkpoint
  starts over on ``--resume``; every resume reaches the uninterrupted run's weights;
* a failed checkpoint write (full, read-only disk) is one line, keeps the previous
  checkpoint and leaves no temporary file; the log stays quiet on a full disk;
* every numeric config value is range-checked before any work starts;
* a checkpoint of another run is named as such, on resume and on load;
* temporary files of killed writers are removed at the start, those of live ones kept.

The signal and kill tests run ``dubfiv_train`` in a subprocess that pauses at a chosen
step (writing a marker file) until a signal arrives, so the test knows where it lands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from disk_faults import failing_writes, mount_small_disk

from dubfiv import config as cfg
from dubfiv.cli.train import main
from dubfiv.runs import RunError, load_run
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import (
    CHECKPOINT,
    EXPERIMENT,
    CheckpointWriteError,
    RunLockedError,
    Trainer,
    TrainingStopped,
    load_checkpoint,
    resume,
    train,
)
from dubfiv.train import distributed as dist_utils
from dubfiv.train import trainer as trainer_module
from dubfiv.train.distributed import DistContext
from two4two.files import owner_tag
from two4two.locking import FolderLockedError

LOCK = ".dubfiv_train.lock"
N_SAMPLES = 64  # 8 steps of 8; a regular checkpoint at 32 samples


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("reliability")
    write_fake_two4two(base / "fake", {"train": 48, "validation": 16}, image_size=16, seed=1)
    return base


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def _config(data: Path, **train_settings: object) -> cfg.ExperimentConfig:
    settings: dict = {"n_train_samples": N_SAMPLES, "val_every_samples": 0,
                      "sample_every_samples": 0, "checkpoint_every_samples": 32,
                      "checkpoint_every_minutes": 0.0, **train_settings}
    return tiny_experiment(data, **settings)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final checkpoint of the uninterrupted run."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference")
    return load_checkpoint(train(_config(data), out, device="cpu", progress=False) / CHECKPOINT)


def _same_weights(a: dict, b: dict) -> None:
    assert a["samples_seen"] == b["samples_seen"]
    for name, value in a["model_state"].items():
        assert torch.allclose(value, b["model_state"][name], rtol=0, atol=1e-6), name
    for ha, hb in zip(a["classifiers"], b["classifiers"], strict=True):
        for name, value in ha.items():
            assert torch.allclose(value, hb[name], rtol=0, atol=1e-6), name


def _one_line(err: str, *needles: str) -> str:
    line = err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, err
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _quiet(*args: str) -> list[str]:
    return [*args, "--device", "cpu", "--quiet"]


# --------------------------------------------------------------------------- subprocesses

PAUSING_TRAINER = """
import os, sys, time
from pathlib import Path
from dubfiv.train.trainer import Trainer
from dubfiv.cli.train import main

pause_at, marker = int(sys.argv[1]), Path(sys.argv[2])
real_step = Trainer.train_step

def step(self, step, images, labels):
    if step == pause_at and self.ctx.rank == 0:
        marker.write_text(f"{os.getpid()} {self.run_dir}")
        deadline = time.monotonic() + 60
        signals = getattr(self, "signals", None)
        while time.monotonic() < deadline and getattr(signals, "received", None) is None:
            time.sleep(0.02)
    return real_step(self, step, images, labels)

Trainer.train_step = step
sys.exit(main(sys.argv[3:]))
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return env


def _start_pausing(pause_at: int, marker: Path, args: list[str],
                   launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """``dubfiv_train args`` in a subprocess whose rank 0 waits at step ``pause_at``
    (``launcher``: e.g. torchrun's arguments before the script)."""
    script = marker.with_suffix(".py")
    script.write_text(PAUSING_TRAINER)
    return subprocess.Popen([sys.executable, *launcher, str(script), str(pause_at), str(marker),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())


def _wait_for(marker: Path, process: subprocess.Popen) -> tuple[int, Path]:
    """The pausing process's pid and the run folder, once it pauses (fails if it ends
    first)."""
    deadline = time.monotonic() + 120
    while not marker.is_file():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the trainer ended (status {process.returncode}) before pausing: {err}")
        assert time.monotonic() < deadline, "the trainer did not reach the pause"
        time.sleep(0.05)
    time.sleep(0.05)  # the marker is written in one call; give it a moment to land
    pid, run_dir = marker.read_text().split(" ", 1)
    return int(pid), Path(run_dir)


def _new_run_args(config_file: Path, out: Path) -> list[str]:
    return _quiet("--experiment", str(config_file), "--output_base_dir", str(out))


# --------------------------------------------------------------------------- 1, 2a: lock, kill -9


def test_second_trainer_is_refused_and_kill_9_after_the_start_checkpoint_resumes(
        data: Path, tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    config_file = cfg.save_experiment(_config(data), tmp_path / "exp.toml")
    holder = _start_pausing(0, tmp_path / "marker", _new_run_args(config_file, tmp_path / "o"))
    try:
        pid, run_dir = _wait_for(tmp_path / "marker", holder)
        assert pid == holder.pid
        # the start checkpoint is written before the first step
        assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == 0
        assert main(_quiet("--resume", str(run_dir))) == 1
        _one_line(capsys.readouterr().err, "dubfiv_train: error:", f"{run_dir} is in use",
                  f"pid {holder.pid}", "this machine", "since", "training", f"kill {holder.pid}")
        with pytest.raises(RunLockedError) as info:
            resume(run_dir, device="cpu", progress=False)
        assert isinstance(info.value, FolderLockedError) and info.value.holder is not None
        assert info.value.holder.pid == holder.pid
    finally:
        holder.kill()
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    assert (run_dir / LOCK).is_file()  # left behind by kill -9; the kernel dropped the lock
    assert main(_quiet("--resume", str(run_dir))) == 0
    assert capsys.readouterr().out.strip() == str(run_dir)
    _same_weights(load_checkpoint(run_dir / CHECKPOINT), reference)
    assert not (run_dir / LOCK).exists()  # removed on release


# --------------------------------------------------------------------------- 2b: signals


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_matches(
        data: Path, tmp_path: Path, reference: dict, number: signal.Signals) -> None:
    config_file = cfg.save_experiment(_config(data), tmp_path / "exp.toml")
    process = _start_pausing(4, tmp_path / "marker", _new_run_args(config_file, tmp_path / "o"))
    try:
        _, run_dir = _wait_for(tmp_path / "marker", process)
        process.send_signal(number)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + number, err
    # step 4 (samples 32..40) was finished, then checkpointed
    expected = (f"dubfiv_train: stopped by {number.name} at 40 samples; checkpoint written; "
                f"continue with dubfiv_train --resume {run_dir}")
    assert _one_line(err) == expected
    assert out == ""
    state = load_checkpoint(run_dir / CHECKPOINT)
    assert state["samples_seen"] == 40 and state["history"]["checkpoints"] == [0, 32, 40]
    assert len(state["pending"]["sums"]) == 4 + 2  # the statistics only, not the flags
    assert f"stopped by {number.name} at 40 samples" in (run_dir / "train.log").read_text()
    assert not (run_dir / LOCK).exists()
    assert resume(run_dir, device="cpu", progress=False) == run_dir
    _same_weights(load_checkpoint(run_dir / CHECKPOINT), reference)


def test_sigterm_to_the_whole_group_with_dataloader_workers(data: Path, tmp_path: Path,
                                                          reference: dict) -> None:
    """A scheduler signals every process of the job, DataLoader workers too: they ignore
    it (``dubfiv.data.ignore_stop_signals``) and the trainer stops cleanly as alone."""
    config_file = cfg.save_experiment(_config(data, num_workers=2), tmp_path / "exp.toml")
    script = (tmp_path / "marker").with_suffix(".py")
    script.write_text(PAUSING_TRAINER)
    process = subprocess.Popen(
        [sys.executable, str(script), "4", str(tmp_path / "marker"),
         *_new_run_args(config_file, tmp_path / "o")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        _, run_dir = _wait_for(tmp_path / "marker", process)
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, err
    _one_line(err, "stopped by SIGTERM at 40 samples; checkpoint written")
    assert resume(run_dir, device="cpu", progress=False) == run_dir
    _same_weights(load_checkpoint(run_dir / CHECKPOINT), reference)


@pytest.mark.slow
def test_distributed_processes_stop_together_when_one_gets_sigterm(
        data: Path, tmp_path: Path) -> None:
    """torchrun with 2 processes: only rank 0 gets the SIGTERM; both finish the step,
    checkpoint once and exit 143; a resume with 2 processes reaches the end."""
    config_file = cfg.save_experiment(_config(data), tmp_path / "exp.toml")
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    process = _start_pausing(3, tmp_path / "marker", _new_run_args(config_file, tmp_path / "o"),
                             torchrun)
    try:
        rank_0, run_dir = _wait_for(tmp_path / "marker", process)
        os.kill(rank_0, signal.SIGTERM)
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode != 0 and err.count("exitcode  : 143") == 2, err[-3000:]
    assert "stopped by SIGTERM at 32 samples; checkpoint written" in err
    state = load_checkpoint(run_dir / CHECKPOINT)
    assert state["samples_seen"] == 32 and state["history"]["checkpoints"] == [0, 32]
    assert not (run_dir / LOCK).exists()
    result = subprocess.run([sys.executable, *torchrun, "-m", "dubfiv.cli.train",
                             *_quiet("--resume", str(run_dir))], capture_output=True, text=True,
                            env=_env(), timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == N_SAMPLES


def _signal_at(monkeypatch: pytest.MonkeyPatch, at_step: int, *numbers: int) -> None:
    """Make the trainer send itself ``numbers`` at the start of step ``at_step``."""
    real = Trainer.train_step

    def step(self: Trainer, step: int, images: torch.Tensor, labels: torch.Tensor
             ) -> torch.Tensor:
        if step == at_step:
            for number in numbers:
                os.kill(os.getpid(), number)
        return real(self, step, images, labels)

    monkeypatch.setattr(Trainer, "train_step", step)


@pytest.fixture
def own_handlers() -> list[int]:
    """Handlers of the test's own for the stop signals (as a notebook may have): they must
    be back after training, and they record what reaches them."""
    seen: list[int] = []
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    previous = {n: signal.signal(n, lambda n, f: seen.append(n)) for n in numbers}
    yield seen
    for number, handler in previous.items():
        signal.signal(number, handler)


def test_sigint_stops_cleanly_and_the_handlers_are_restored(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        own_handlers: list[int]) -> None:
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    _signal_at(monkeypatch, 2, signal.SIGINT)
    with pytest.raises(TrainingStopped) as info:
        train(_config(data), tmp_path / "o", device="cpu", progress=False)
    assert (info.value.signal_number, info.value.signal_name) == (signal.SIGINT, "SIGINT")
    assert info.value.samples == 24 and info.value.run_dir is not None
    assert load_checkpoint(info.value.run_dir / CHECKPOINT)["samples_seen"] == 24
    assert own_handlers == []  # the trainer's handler took the signal
    assert {n: signal.getsignal(n) for n in before} == before


def test_a_second_sigint_interrupts_at_once(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        own_handlers: list[int], capsys: pytest.CaptureFixture) -> None:
    _signal_at(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    config_file = cfg.save_experiment(_config(data), tmp_path / "exp.toml")
    assert main(_new_run_args(config_file, tmp_path / "o")) == 130
    _one_line(capsys.readouterr().err, "interrupted")
    (run_dir,) = (tmp_path / "o").iterdir()
    assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == 0  # the start checkpoint
    assert own_handlers == []


def test_the_processes_agree_on_a_stop_through_the_step_all_reduce(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop that another process received (its flag in the summed statistics) stops this
    one at the same step, with a checkpoint; the statistics keep their length."""
    real = dist_utils.all_reduce_sum
    n_stats = 4 + 2
    calls = []

    def another_rank_got_sigterm(values: torch.Tensor, context: DistContext) -> torch.Tensor:
        summed = real(values, context).clone()
        if len(summed) == n_stats + 3:  # a training step's statistics and flags
            calls.append(len(summed))
            if len(calls) == 3:  # step 2
                summed[n_stats:] += torch.tensor([1.0, float(signal.SIGTERM), 0.0],
                                                 dtype=torch.float64)
        return summed

    monkeypatch.setattr(dist_utils, "all_reduce_sum", another_rank_got_sigterm)
    with pytest.raises(TrainingStopped) as info:
        train(_config(data), tmp_path / "o", device="cpu", progress=False)
    assert info.value.signal_name == "SIGTERM" and info.value.samples == 24
    state = load_checkpoint(info.value.run_dir / CHECKPOINT)
    assert state["samples_seen"] == 24 and len(state["pending"]["sums"]) == n_stats


# --------------------------------------------------------------------------- 2c: minutes


def test_checkpoint_every_minutes_by_the_clock(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(trainer_module, "monotonic", lambda: now[0])
    real = Trainer.train_step

    def one_minute_per_step(self: Trainer, step: int, images: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
        now[0] = 60.0 * step
        return real(self, step, images, labels)

    monkeypatch.setattr(Trainer, "train_step", one_minute_per_step)
    config = _config(data, checkpoint_every_samples=0, checkpoint_every_minutes=2.5)
    run_dir = train(config, tmp_path / "a", device="cpu", progress=False)
    # start at minute 0; due at step 3 (minute 3 >= 2.5), written after it (32 samples);
    # then due again at step 6 (minute 6 - 3 >= 2.5): 56 samples; and the end
    assert load_checkpoint(run_dir / CHECKPOINT)["history"]["checkpoints"] == [0, 32, 56, 64]
    now[0] = 0.0
    off = dataclasses.replace(config, train=dataclasses.replace(
        config.train, checkpoint_every_minutes=0.0))
    run_dir = train(off, tmp_path / "b", device="cpu", progress=False)
    assert load_checkpoint(run_dir / CHECKPOINT)["history"]["checkpoints"] == [0, 64]


def test_only_rank_0s_clock_decides(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(data, checkpoint_every_minutes=1.0)
    monkeypatch.setattr(trainer_module, "monotonic", lambda: 1000.0)
    main_rank = Trainer(config, DistContext(), None, progress=False)
    other = Trainer(config, DistContext(rank=1, world_size=2), None, progress=False)
    main_rank._last_checkpoint = other._last_checkpoint = 0.0
    assert main_rank._checkpoint_due() and not other._checkpoint_due()
    main_rank._last_checkpoint = 961.0
    assert not main_rank._checkpoint_due()


# --------------------------------------------------------------------------- 2d: resume checks


def test_resume_of_a_run_killed_during_init_starts_it_over(
        data: Path, tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    cfg.save_experiment(_config(data), run_dir / EXPERIMENT)
    assert main(_quiet("--resume", str(run_dir))) == 0, capsys.readouterr().err
    _same_weights(load_checkpoint(run_dir / CHECKPOINT), reference)
    assert "starting the run over" in (run_dir / "train.log").read_text()


def test_resume_of_a_folder_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gone = tmp_path / "gone"
    assert main(_quiet("--resume", str(gone))) == 1
    _one_line(capsys.readouterr().err, str(gone), "not found", "--experiment")
    assert not gone.exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert main(_quiet("--resume", str(plain))) == 1
    _one_line(capsys.readouterr().err, str(plain), "experiment.toml", "--experiment")
    assert list(plain.iterdir()) == []  # no lock file left in a folder that is no run


# --------------------------------------------------------------------------- 3: disks


def test_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(
        data: Path, tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    with mount_small_disk(tmp_path / "disk", 4096) as disk:
        run_dir = train(_config(data), disk.path, device="cpu", progress=False,
                        stop_after_samples=16)
        disk.fill(leave_bytes=64 * 1024)  # room for the lock and log lines, not a checkpoint
        result = subprocess.run([sys.executable, "-m", "dubfiv.cli.train",
                                 *_quiet("--resume", str(run_dir))], capture_output=True,
                                text=True, env=_env(), timeout=120, check=False)
        assert result.returncode == 1, result.stderr
        _one_line(result.stderr, "dubfiv_train: error: cannot write the checkpoint",
                  str(run_dir / CHECKPOINT), "No space left on device",
                  "previous checkpoint (16 samples) is kept",
                  f"free some space in {run_dir / 'models'}", f"--resume {run_dir}")
        assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == 16
        assert [p.name for p in disk.path.rglob("*.tmp")] == []
        assert not (run_dir / LOCK).exists()
        # a read-only disk: one line before any work
        disk.read_only()
        try:
            assert main(_quiet("--resume", str(run_dir))) == 1
            _one_line(capsys.readouterr().err, str(run_dir), "read-only", "writable")
        finally:
            disk.read_only(False)
        disk.free_space()
        assert resume(run_dir, device="cpu", progress=False) == run_dir
        _same_weights(load_checkpoint(run_dir / CHECKPOINT), reference)


def test_the_log_stays_quiet_on_a_full_disk(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    from dubfiv.train import loggers

    with mount_small_disk(tmp_path / "disk", 256) as disk:
        log = loggers.open_log(disk.path, name="dubfiv.test_full_log")
        disk.fill()
        for i in range(2000):
            log.info("line %d of a long training log that no longer fits on the disk", i)
        loggers.close_log(log)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("after", "kept"), [(1, None), (3, 0)])
def test_failing_checkpoint_writes_keep_the_previous_one(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, after: int, kept: int | None) -> None:
    """Written through the atomic writer in order: experiment.toml, the start checkpoint,
    training_images.png, the checkpoint at 32 samples: the write after ``after`` fails."""
    config_file = cfg.save_experiment(_config(data), tmp_path / "exp.toml")
    with failing_writes(monkeypatch, after=after) as failed:
        assert main(_new_run_args(config_file, tmp_path / "o")) == 1
    (run_dir,) = (tmp_path / "o").iterdir()
    assert [p.parent for p in failed] == [run_dir / "models"]
    previous = ("no checkpoint had been written yet" if kept is None
                else f"the previous checkpoint ({kept} samples) is kept")
    _one_line(capsys.readouterr().err, "cannot write the checkpoint", str(run_dir / CHECKPOINT),
              previous, f"--resume {run_dir}")
    assert not list(run_dir.rglob("*.tmp"))
    if kept is None:
        assert not (run_dir / CHECKPOINT).exists()
    else:
        assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == kept
    resume(run_dir, device="cpu", progress=False)  # without a checkpoint: starts over
    assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == N_SAMPLES
    # the library raises the error as a type, with the failed write's errno
    with failing_writes(monkeypatch, after=after), pytest.raises(CheckpointWriteError) as info:
        train(_config(data), tmp_path / "library", device="cpu", progress=False)
    assert info.value.errno == errno.ENOSPC


# --------------------------------------------------------------------------- 4: config ranges


@pytest.mark.parametrize(
    ("text", "key", "needle"),
    [
        ("[train]\nbatch_size = 0\n", "train.batch_size", "must be at least 1, got 0"),
        ("[train]\nbatch_size = -4\n", "train.batch_size", "must be at least 1, got -4"),
        ("[train]\nn_train_samples = 0\n", "train.n_train_samples", "at least 1"),
        ("[train]\ncheckpoint_every_samples = -1\n", "train.checkpoint_every_samples",
         "must be at least 0, got -1"),
        ("[train]\ncheckpoint_every_minutes = -0.5\n", "train.checkpoint_every_minutes",
         "at least 0"),
        ("[train]\ncheckpoint_every_minutes = inf\n", "train.checkpoint_every_minutes",
         "finite"),
        ("[train.optimizer]\nlr = nan\n", "train.optimizer.lr", "must be a finite number"),
        ("[train.optimizer]\nlr = -0.001\n", "train.optimizer.lr", "must be positive"),
        ("[train.optimizer]\nbetas = [0.9, 1.0]\n", "train.optimizer.betas[1]", "in [0, 1)"),
        ("[train.optimizer]\nbetas = [0.9]\n", "train.optimizer.betas", "2 entries"),
        ("[train.optimizer]\nmomentum = -0.1\n", "train.optimizer.momentum", "in [0, 1)"),
        ("[train.optimizer.schedule]\nfade_in_steps = -5\n",
         "train.optimizer.schedule.fade_in_steps", "at least 0"),
        ("[train]\nseed = -1\n", "train.seed", "at least 0"),
        ("[train]\nmax_grad_norm = -1.0\n", "train.max_grad_norm", "at least 0"),
        ("[model]\nimage_size = 0\n", "model.image_size", "at least 1"),
        ("[[model.layers]]\nname = \"flow_blocks\"\nn_blocks = 0\n", "model.layers[0].n_blocks",
         "at least 1"),
        ("[[model.layers]]\nname = \"fade_out_and_pool\"\nchannels_to_keep = 0\n",
         "model.layers[0].channels_to_keep", "at least 1"),
        ("[[classifiers]]\nlabel_noise = 1.5\n", "classifiers[0].label_noise", "in [0, 1]"),
        ("[[classifiers]]\nloss_weight = -1.0\n", "classifiers[0].loss_weight", "at least 0"),
        ("[[classifiers]]\n[classifiers.optimizer]\nlr = 0.0\n", "classifiers[0].optimizer.lr",
         "positive"),
    ],
)
def test_config_values_out_of_range_name_file_and_key(
        tmp_path: Path, text: str, key: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load_experiment(path)
    assert str(info.value).startswith(f"{path}: key '{key}': ")
    assert needle in str(info.value)


def test_the_three_file_form_checks_ranges_too(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text("image_size = 16\n")
    (tmp_path / "t.toml").write_text("batch_size = 8\n")
    (tmp_path / "c.toml").write_text("[[classifiers]]\nlabel_noise = -0.1\n")
    with pytest.raises(cfg.ConfigError, match=r"c\.toml: key 'classifiers\[0\]\.label_noise'"):
        cfg.load_experiment_parts(tmp_path / "m.toml", tmp_path / "t.toml", tmp_path / "c.toml")


def _numeric(tp: Any) -> bool:
    import typing

    return tp in (int, float) or any(_numeric(a) for a in typing.get_args(tp))


def test_every_numeric_field_declares_its_range() -> None:
    import typing

    numeric = 0
    for cls in (cfg.ModelConfig, cfg.FadeOutAndPool, cfg.FlowBlocks, cfg.TrainConfig,
                cfg.ClassifierConfig, cfg.OptimizerConfig, cfg.ScheduleConfig):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if _numeric(hints[field.name]):
                numeric += 1
                assert isinstance(field.metadata.get("range"), cfg.Range), (cls, field.name)
    assert numeric >= 25


def test_python_configs_are_checked_before_the_dataset_is_opened(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"  # opening the dataset would fail with another error
    for bad, key in ((tiny_experiment(nowhere, batch_size=0), "train.batch_size"),
                     (tiny_experiment(nowhere, optimizer=cfg.OptimizerConfig(lr=math.nan)),
                      "train.optimizer.lr")):
        with pytest.raises(cfg.ConfigError, match=rf"key '{key}'"):
            train(bad, tmp_path / "o", device="cpu", progress=False)
    assert not (tmp_path / "o").exists()


def test_a_command_line_override_is_checked(data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    config_file = cfg.save_experiment(tiny_experiment(tmp_path / "nowhere"), tmp_path / "e.toml")
    assert main(_quiet("--experiment", str(config_file), "--output_base_dir",
                       str(tmp_path / "o"), "--n_train_samples", "0")) == 1
    _one_line(capsys.readouterr().err, str(config_file), "--n_train_samples",
              "key 'train.n_train_samples': must be at least 1, got 0")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- 5: wrong checkpoint


@pytest.fixture(scope="module")
def two_runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two stopped runs of different architectures (coupling widths 16 and 8)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("two_runs")
    runs = []
    for width in (16, 8):
        config = tiny_experiment(data, width=width, n_train_samples=N_SAMPLES,
                                 val_every_samples=0, sample_every_samples=0,
                                 checkpoint_every_samples=0)
        runs.append(train(config, out / str(width), device="cpu", progress=False,
                          stop_after_samples=16))
    return runs[0], runs[1]


def _swapped(runs: tuple[Path, Path], tmp_path: Path, drop_experiment: bool = False) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(runs[0], run_dir)
    state = load_checkpoint(runs[1] / CHECKPOINT)
    if drop_experiment:
        del state["experiment"]
    torch.save(state, run_dir / CHECKPOINT)
    return run_dir


def test_resume_with_another_runs_checkpoint_is_one_line(
        two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = _swapped(two_runs, tmp_path)
    assert main(_quiet("--resume", str(run_dir))) == 1
    _one_line(capsys.readouterr().err, str(run_dir / CHECKPOINT), str(run_dir / EXPERIMENT),
              "model.layers[1].block_channels is 8 in the checkpoint but 16", "--experiment")
    # without the stored experiment, the weights' own check names the mismatch
    shutil.rmtree(run_dir)
    run_dir = _swapped(two_runs, tmp_path, drop_experiment=True)
    assert main(_quiet("--resume", str(run_dir))) == 1
    _one_line(capsys.readouterr().err, str(run_dir / CHECKPOINT), str(run_dir / EXPERIMENT),
              "the weights do not fit")


def test_resume_ignores_where_the_dataset_lives(two_runs: tuple[Path, Path], tmp_path: Path,
                                                data: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(two_runs[0], run_dir)
    moved = tmp_path / "moved"
    shutil.copytree(data / "fake", moved / "fake")
    assert resume(run_dir, device="cpu", progress=False, dataset_dir=str(moved),
                  stop_after_samples=24) == run_dir
    assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == 24


def test_load_run_names_a_checkpoint_of_another_run(two_runs: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    run_dir = _swapped(two_runs, tmp_path)
    with pytest.raises(RunError) as info:
        load_run(run_dir, device="cpu")
    message = str(info.value)
    assert str(run_dir / CHECKPOINT) in message and str(run_dir / EXPERIMENT) in message
    assert "another experiment" in message and "\n" not in message
    assert load_run(two_runs[1], device="cpu").config_source == "experiment.toml"


# --------------------------------------------------------------------------- 6: leftovers


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_writers_are_removed_at_the_start(
        two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(two_runs[0], run_dir)
    host = owner_tag().split("-")[1]
    dead, live = _dead_pid(), os.getppid()
    planted = {
        "dead_model": run_dir / "models" / f".models.torch.pid{dead}-{host}.x1.tmp",
        "dead_image": run_dir / "images" / f".loss_curves.png.pid{dead}-{host}.x2.tmp",
        "live_model": run_dir / "models" / f".models.torch.pid{live}-{host}.x3.tmp",
        "untagged": run_dir / "models" / ".notes.tmp",
    }
    for path in planted.values():
        path.write_bytes(b"partial")
    assert resume(run_dir, device="cpu", progress=False, stop_after_samples=24) == run_dir
    assert {name for name, path in planted.items() if path.exists()} == {"live_model",
                                                                          "untagged"}
    log = (run_dir / "train.log").read_text()
    assert f"removed {planted['dead_model']}" in log


def test_no_handlers_outside_the_main_thread() -> None:
    """Python allows signal handlers only in the main thread: elsewhere (a notebook's
    worker thread) training runs without them instead of failing."""
    import threading

    from dubfiv.train.signals import StopSignals

    seen = []

    def work() -> None:
        with StopSignals() as stop:
            seen.append(stop.installed)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [False]
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert stop.installed and signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before
