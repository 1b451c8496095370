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
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_single_node.sh"
#: seconds the script may take to start or stop the daemons
SCRIPT_TIMEOUT_S = 180
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


class ClusterUnavailable(RuntimeError):
    """The cluster could not start; the message says why."""


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


def log_tail(directory: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of each log the script's daemons wrote in ``directory``."""
    parts = []
    for log in sorted((directory / "log").glob("*")):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        if text:
            parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)


def _run_script(action: str, directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action, str(directory)], capture_output=True,
                          text=True, env=env, timeout=SCRIPT_TIMEOUT_S, check=False)


def client_env(conf: Path) -> dict[str, str]:
    """``os.environ`` without inherited SLURM job variables, with ``SLURM_CONF=conf``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    return env


def start(directory: Path) -> SlurmCluster:
    """Start the cluster in ``directory``; raises :class:`ClusterUnavailable` with the reason."""
    if shutil.which("bash") is None:
        raise ClusterUnavailable("bash is missing")
    ctld_port, slurmd_port = free_port_pair()
    env = {**os.environ, "DUBFIV_SLURMCTLD_PORT": str(ctld_port),
           "DUBFIV_SLURMD_PORT": str(slurmd_port)}
    try:
        result = _run_script("start", directory, env)
    except subprocess.TimeoutExpired:
        stop(directory)
        raise ClusterUnavailable(f"{SCRIPT.name} start took over {SCRIPT_TIMEOUT_S} s") from None
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise ClusterUnavailable(reason[0])
    conf = directory / "slurm.conf"
    text = conf.read_text()
    node = re.search(r"^NodeName=(\S+)", text, re.MULTILINE)
    cpus = re.search(r"^NodeName=.*\bCPUs=(\d+)", text, re.MULTILINE)
    if node is None or cpus is None:
        stop(directory)
        raise ClusterUnavailable(f"no NodeName line with CPUs= in {conf}")
    return SlurmCluster(directory=directory, conf=conf, node=node.group(1),
                        cpus=int(cpus.group(1)), env=client_env(conf))


def stop(directory: Path) -> None:
    """Stop the daemons started in ``directory``; raises RuntimeError if some still run."""
    result = _run_script("stop", directory, dict(os.environ))
    if result.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} stop {directory}: {result.stderr.strip()}")


def session_cluster() -> Iterator[SlurmCluster]:
    """Body of the ``slurm_cluster`` fixture: start, export ``SLURM_CONF``, yield, stop."""
    if os.environ.get("DUBFIV_TEST_NO_SLURM", "") not in ("", "0"):
        pytest.skip("DUBFIV_TEST_NO_SLURM is set")
    directory = Path(tempfile.mkdtemp(prefix="dubfiv-slurm-", dir="/tmp"))
    try:
        cluster = start(directory)
    except ClusterUnavailable as error:
        tail = log_tail(directory)
        if not tail:  # nothing started (not root, packages missing): nothing to look at
            shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"no SLURM test cluster: {error}" + (f"\n{tail}" if tail else ""))
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        stop(directory)  # raises (a teardown error) if a daemon is left running
        shutil.rmtree(directory, ignore_errors=True)
