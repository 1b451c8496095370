"""A private single-node SLURM cluster for the tests (registered in tests/conftest.py).

:func:`session_cluster` runs ``scripts/slurm_single_node.sh start`` in a short
temporary folder under /tmp (slurmd's unix sockets need short paths), on free
ports, sets ``SLURM_CONF`` for the session and stops exactly the daemons it
started at the end (docs/slurm.md). When the cluster cannot start (not root,
``slurm-wlm``/``munge`` missing, a daemon fails) the tests that use it skip
with the script's reason and the end of its logs (the folder is kept when a
daemon wrote logs); ``DUBFIV_TEST_NO_SLURM=1`` skips them without trying.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from private_daemon import DaemonScript, DaemonUnavailable, daemon_session

#: ports tried for slurmctld and slurmd: the script's defaults first, then this range
DEFAULT_PORTS = (16817, 16818)
PORT_RANGE = range(17000, 19999, 2)


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """A running single-node cluster.

    ``env`` is ``os.environ`` without SLURM job variables inherited from an
    outer allocation, plus ``SLURM_CONF``: pass it to ``sbatch``/``srun``.
    """

    directory: Path
    conf: Path
    node: str
    cpus: int
    env: dict[str, str]


class ClusterUnavailable(DaemonUnavailable):
    """The cluster could not start; the message says why."""


#: scripts/slurm_single_node.sh, with the seconds it may take to start or stop the daemons
SCRIPT = DaemonScript(Path(__file__).resolve().parents[1] / "scripts" / "slurm_single_node.sh",
                      timeout_s=180, unavailable=ClusterUnavailable)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_pair() -> tuple[int, int]:
    """Ports for slurmctld and slurmd that nothing listens on now."""
    for pair in [DEFAULT_PORTS, *((p, p + 1) for p in PORT_RANGE)]:
        if all(_port_free(port) for port in pair):
            return pair
    raise ClusterUnavailable("no free pair of ports for slurmctld and slurmd")


def client_env(conf: Path) -> dict[str, str]:
    """``os.environ`` without inherited SLURM job variables, with ``SLURM_CONF=conf``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    return env


def start(directory: Path) -> SlurmCluster:
    """Start the cluster in ``directory``; raises :class:`ClusterUnavailable` with the reason."""
    ctld_port, slurmd_port = free_port_pair()
    SCRIPT.start(directory, {**os.environ, "DUBFIV_SLURMCTLD_PORT": str(ctld_port),
                             "DUBFIV_SLURMD_PORT": str(slurmd_port)})
    conf = directory / "slurm.conf"
    text = conf.read_text()
    node = re.search(r"^NodeName=(\S+)", text, re.MULTILINE)
    cpus = re.search(r"^NodeName=.*\bCPUs=(\d+)", text, re.MULTILINE)
    if node is None or cpus is None:
        SCRIPT.stop(directory)
        raise ClusterUnavailable(f"no NodeName line with CPUs= in {conf}")
    return SlurmCluster(directory=directory, conf=conf, node=node.group(1),
                        cpus=int(cpus.group(1)), env=client_env(conf))


def session_cluster() -> Iterator[SlurmCluster]:
    """Body of the ``slurm_cluster`` fixture: start, export ``SLURM_CONF``, yield, stop."""
    with daemon_session("SLURM test cluster", "DUBFIV_TEST_NO_SLURM", "dubfiv-slurm-", start,
                        SCRIPT.stop) as cluster:
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            yield cluster
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous
