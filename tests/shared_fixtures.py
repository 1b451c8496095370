"""Session-wide test data: the small Two4Two dataset and a briefly trained small run.

Rendering and training take minutes, so every integration test shares one
dataset and one run per session. They are cached between sessions in pytest's
cache folder (``.pytest_cache/d/dubfiv_fixtures``, or ``$DUBFIV_TEST_CACHE``),
keyed by a hash of the configs and of the source code that produces them, so an
edit to the renderer re-renders and an edit to the training code retrains. A
file lock makes concurrent pytest processes build each item once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_DATASET_CONFIG = ROOT / "config" / "dataset_small.toml"
SMALL_MODEL_CONFIG = ROOT / "config" / "small_model.toml"
SMALL_DATASET_NAME = "two4two_small"
# The code whose change invalidates the cached run.
TRAINING_SOURCES = (
    "dubfiv/config.py", "dubfiv/data.py", "dubfiv/heads.py", "dubfiv/losses.py",
    "dubfiv/schedules.py", "dubfiv/flow/*.py", "dubfiv/train/*.py",
)


def _digest(paths: Iterable[Path], extra: str = "") -> str:
    sha = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        sha.update(str(path.relative_to(ROOT)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def _sources(*patterns: str) -> list[Path]:
    return [p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file()]


def cache_root(pytest_config: pytest.Config) -> Path:
    env = os.environ.get("DUBFIV_TEST_CACHE")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    cache = getattr(pytest_config, "cache", None)  # None under `-p no:cacheprovider`
    if cache is None:
        path = Path(tempfile.gettempdir()) / "dubfiv_test_cache"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(cache.mkdir("dubfiv_fixtures"))


def _reusable(target: Path) -> Path | None:
    """With ``DUBFIV_TEST_REUSE_FIXTURES=1``, the newest finished build of the same kind.

    For development while the sources change often: the cached dataset and run are
    then reused although their source hash differs. CI never sets it.
    """
    if os.environ.get("DUBFIV_TEST_REUSE_FIXTURES") != "1":
        return None
    kind = target.name.rsplit("_", 1)[0]
    builds = [p for p in target.parent.glob(f"{kind}_*")
              if p.is_dir() and p.name.rsplit("_", 1)[0] == kind]
    return max(builds, key=lambda p: p.stat().st_mtime, default=None)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build ``target`` with ``build(tmp)`` unless it exists; atomic and process-safe."""
    if target.exists():  # built earlier: no need to wait for the lock
        return target
    reused = _reusable(target)
    if reused is not None:
        return reused
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        tmp = target.parent / f".{target.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def small_dataset(root: Path) -> Path:
    """The small Two4Two dataset (``config/dataset_small.toml``); returns its folder.

    The datasets folder (parent of the returned path) is what ``--dataset_dir`` takes.
    """
    from two4two.dataset import render_dataset_config
    from two4two.dataset_config import load_dataset_configs

    key = _digest(
        [SMALL_DATASET_CONFIG, *_sources("two4two/**/*.py", "dubfiv/data_generation.py")]
    )

    def build(tmp: Path) -> None:
        for config in load_dataset_configs(SMALL_DATASET_CONFIG):
            out = tmp / SMALL_DATASET_NAME
            render_dataset_config(dataclasses.replace(config, output_dir=str(out)),
                                  progress=False)

    return build_once(root / f"datasets_{key}", build) / SMALL_DATASET_NAME


def small_run(root: Path, dataset: Path) -> Path:
    """A run of ``config/small_model.toml`` (its full CPU-sized budget) on the small dataset."""
    from dubfiv.config import load_experiment
    from dubfiv.train import train

    key = _digest(
        [SMALL_MODEL_CONFIG, *_sources(*TRAINING_SOURCES)],
        extra=str(dataset),
    )

    def build(tmp: Path) -> None:
        config = load_experiment(SMALL_MODEL_CONFIG)
        config = dataclasses.replace(
            config,
            train=dataclasses.replace(
                config.train,
                dataset=dataset.name,
                dataset_dir=str(dataset.parent),
            ),
        )
        run_dir = train(config, tmp, device="cpu", progress=False,
                        config_files=[SMALL_MODEL_CONFIG])
        run_dir.rename(tmp / "run")

    return build_once(root / f"run_{key}", build) / "run"


# --------------------------------------------------------------------------- ground truth


# The supervised CNN of the tests: resnet18 on 32x32 copies of the small dataset's images,
# 2 epochs of its 2000 training images (~45 s on one core). Trained on the *biased* small
# dataset: the tests check that the training reads attributes that are visible in the
# pixels (object and background colour, and the class, which the colour predicts there),
# and the analysis tests need any trained reader; an unbiased dataset would add a render
# without testing more code.
SMALL_SUPERVISED_SETTINGS = {
    "model_name": "resnet18",
    "model_kwargs": {},
    "batch_size": 16,
    "num_epochs": 2,
    "ckpt_freq": 1,
    "lr": 2e-3,
    "image_size": 32,
    "seed": 0,
}

# A larger biased dataset (dataset_small.toml with 3000 train and 300 test images) and a
# longer run on it (18000 samples) for the slow ground-truth test (~5 min on 2 cores):
# measured validation accuracy 0.76, and the intervention report separates arm position
# and object colour (linear effects 0.50 [0.35, 0.65] and 0.68 [0.58, 0.78] logit std)
# from the background colour and the spherical shape (0.09 [0.01, 0.18] and 0.08 [0.01,
# 0.17], not relevant) more clearly than the small run does (arm 0.42 [0.24, 0.58],
# colour 0.76 [0.62, 0.89], background 0.13 [0.01, 0.27], spherical 0.01 [0.00, 0.14]).
MEDIUM_DATASET_NAME = "two4two_medium"
MEDIUM_SPLITS = {"train": 3000, "validation": 100, "test": 300}
MEDIUM_RUN_SAMPLES = 18000


def small_supervised(root: Path, dataset: Path) -> Path:
    """The supervised CNN (:data:`SMALL_SUPERVISED_SETTINGS`) trained on ``dataset``.

    Trained with one torch thread: on a machine shared by several processes, two
    threads per process made the small convolutions 40x slower.
    """
    import torch

    from dubfiv.supervised import SupervisedConfig, train_supervised

    settings = sorted((k, repr(v)) for k, v in SMALL_SUPERVISED_SETTINGS.items())
    key = _digest(_sources("dubfiv/supervised/*.py", "dubfiv/data.py"),
                  extra=f"{dataset}:{settings}")

    def build(tmp: Path) -> None:
        config = SupervisedConfig(dataset=dataset.name, dataset_dir=str(dataset.parent),
                                  **SMALL_SUPERVISED_SETTINGS)  # type: ignore[arg-type]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train_supervised(config, tmp / "supervised", device="cpu", progress=False)
        finally:
            torch.set_num_threads(threads)

    return build_once(root / f"supervised_{key}", build) / "supervised"


def medium_dataset(root: Path) -> Path:
    """``config/dataset_small.toml`` with :data:`MEDIUM_SPLITS` images; returns its folder."""
    from two4two.dataset import render_dataset_config
    from two4two.dataset_config import load_dataset_configs

    key = _digest(
        [SMALL_DATASET_CONFIG, *_sources("two4two/**/*.py", "dubfiv/data_generation.py")],
        extra=f"medium:{sorted(MEDIUM_SPLITS.items())}",
    )

    def build(tmp: Path) -> None:
        for config in load_dataset_configs(SMALL_DATASET_CONFIG):
            splits = [dataclasses.replace(s, n_samples=MEDIUM_SPLITS.get(s.name, s.n_samples))
                      for s in config.split]
            render_dataset_config(dataclasses.replace(
                config, output_dir=str(tmp / MEDIUM_DATASET_NAME), split=splits),
                progress=False)

    return build_once(root / f"datasets_medium_{key}", build) / MEDIUM_DATASET_NAME


def medium_run(root: Path, dataset: Path) -> Path:
    """``config/small_model.toml`` trained for :data:`MEDIUM_RUN_SAMPLES` on ``dataset``."""
    from dubfiv.config import load_experiment
    from dubfiv.train import train

    key = _digest(
        [SMALL_MODEL_CONFIG, *_sources(*TRAINING_SOURCES)],
        extra=f"{dataset}:{MEDIUM_RUN_SAMPLES}",
    )

    def build(tmp: Path) -> None:
        config = load_experiment(SMALL_MODEL_CONFIG)
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, dataset=dataset.name, dataset_dir=str(dataset.parent),
            n_train_samples=MEDIUM_RUN_SAMPLES))
        run_dir = train(config, tmp, device="cpu", progress=False,
                        config_files=[SMALL_MODEL_CONFIG])
        run_dir.rename(tmp / "run")

    return build_once(root / f"run_medium_{key}", build) / "run"
