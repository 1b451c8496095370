"""Session fixtures shared by the integration tests (see tests/shared_fixtures.py and
tests/slurm_cluster.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shared_fixtures
import slurm_cluster as slurm_cluster_module
from postgres_server import postgres_url  # noqa: F401 (the session fixture)


@pytest.fixture(scope="session")
def small_dataset(request: pytest.FixtureRequest) -> Path:
    """Folder of the rendered small Two4Two dataset (its parent is a ``dataset_dir``)."""
    return shared_fixtures.small_dataset(shared_fixtures.cache_root(request.config))


@pytest.fixture(scope="session")
def small_run(request: pytest.FixtureRequest, small_dataset: Path) -> Path:
    """Run directory of the small model trained briefly on ``small_dataset``."""
    return shared_fixtures.small_run(shared_fixtures.cache_root(request.config), small_dataset)


@pytest.fixture(scope="session")
def small_supervised(request: pytest.FixtureRequest, small_dataset: Path) -> Path:
    """Directory of the supervised CNN trained briefly on ``small_dataset``."""
    return shared_fixtures.small_supervised(shared_fixtures.cache_root(request.config),
                                            small_dataset)


@pytest.fixture(scope="session")
def medium_dataset(request: pytest.FixtureRequest) -> Path:
    """Folder of the medium biased dataset (3000 train / 300 test images; slow to render)."""
    return shared_fixtures.medium_dataset(shared_fixtures.cache_root(request.config))


@pytest.fixture(scope="session")
def medium_run(request: pytest.FixtureRequest, medium_dataset: Path) -> Path:
    """Run directory of the small model trained longer on ``medium_dataset`` (slow)."""
    return shared_fixtures.medium_run(shared_fixtures.cache_root(request.config), medium_dataset)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[slurm_cluster_module.SlurmCluster]:
    """A private single-node SLURM cluster; ``SLURM_CONF`` points at it for the session.

    Skips when it cannot start (not root, slurm-wlm/munge missing) or with
    ``DUBFIV_TEST_NO_SLURM=1``; its daemons are stopped by PID at the end.
    """
    yield from slurm_cluster_module.session_cluster()
