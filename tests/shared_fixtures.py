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
# Training budget of the shared run (samples): enough for the head to use the
# object colour and the arm position, small enough for CI.
SMALL_RUN_SAMPLES = 6000
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


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build ``target`` with ``build(tmp)`` unless it exists; atomic and process-safe."""
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
    """A run of ``config/small_model.toml`` trained briefly on :func:`small_dataset`."""
    from dubfiv.config import load_experiment
    from dubfiv.train import train

    key = _digest(
        [SMALL_MODEL_CONFIG, *_sources(*TRAINING_SOURCES)],
        extra=f"{dataset}:{SMALL_RUN_SAMPLES}",
    )

    def build(tmp: Path) -> None:
        config = load_experiment(SMALL_MODEL_CONFIG)
        config = dataclasses.replace(
            config,
            train=dataclasses.replace(
                config.train,
                dataset=dataset.name,
                dataset_dir=str(dataset.parent),
                n_train_samples=SMALL_RUN_SAMPLES,
            ),
        )
        run_dir = train(config, tmp, device="cpu", progress=False,
                        config_files=[SMALL_MODEL_CONFIG])
        run_dir.rename(tmp / "run")

    return build_once(root / f"run_{key}", build) / "run"
