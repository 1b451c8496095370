"""A private PostgreSQL server for the tests (registered in tests/conftest.py).

The session fixture :func:`postgres_url` runs ``scripts/postgres_local.sh start`` in a
short temporary folder under /tmp, on a free port, and yields the SQLAlchemy URL it prints
(``postgresql+psycopg://dubfiv:PASSWORD@127.0.0.1:PORT/dubfiv``); at the end it stops
exactly that server and removes the folder. When the server cannot start (no
PostgreSQL server programs, no user to run it as root, psycopg missing, ...) the
tests that use it skip with the script's reason; ``DUBFIV_TEST_NO_POSTGRES=1`` skips
them without trying. :func:`fresh_database` gives a test a schema of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres_local.sh"
#: seconds the script may take to start or stop the server
SCRIPT_TIMEOUT_S = 120


class PostgresUnavailable(RuntimeError):
    """The server could not start; the message says why."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the kernel's choice, so two
    test sessions starting at once do not both take the script's first free port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_script(action: str, directory: Path, port: int | None = None
                ) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"DUBFIV_PG_PORT": str(port)} if port else {})}
    return subprocess.run(["bash", str(SCRIPT), action, str(directory)], capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT_S, check=False, env=env)


def start(directory: Path) -> str:
    """Start the server in ``directory`` and return its URL; raises
    :class:`PostgresUnavailable` with the script's reason."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install 'psycopg[binary]')"
                                  ) from None
    if shutil.which("bash") is None:
        raise PostgresUnavailable("bash is missing")
    try:
        result = _run_script("start", directory, free_port())
    except subprocess.TimeoutExpired:
        stop(directory)
        raise PostgresUnavailable(f"{SCRIPT.name} start took over {SCRIPT_TIMEOUT_S} s"
                                  ) from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise PostgresUnavailable(reason[0])
    return lines[-1]


def stop(directory: Path) -> None:
    """Stop the server started in ``directory``; raises RuntimeError if it still runs."""
    result = _run_script("stop", directory)
    if result.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} stop {directory}: {result.stderr.strip()}")


def fresh_database(url: str) -> str:
    """An empty schema of its own on the server of ``url``; returns a URL whose
    connections use it (``options=-csearch_path=...``): much cheaper than a database
    per test, whose files the server would copy and sync."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                         password=parsed.password, dbname=parsed.database,
                         autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return parsed.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
        hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a private PostgreSQL server for the test session.

    Skips when it cannot start (no PostgreSQL server programs, not root and no initdb
    of one's own, psycopg missing) or with ``DUBFIV_TEST_NO_POSTGRES=1``; the server is
    stopped by its PID at the end.
    """
    if os.environ.get("DUBFIV_TEST_NO_POSTGRES", "") not in ("", "0"):
        pytest.skip("DUBFIV_TEST_NO_POSTGRES is set")
    directory = Path(tempfile.mkdtemp(prefix="dubfiv-pg-", dir="/tmp"))
    try:
        url = start(directory)
    except PostgresUnavailable as error:
        log = directory / "log" / "postgres.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:]) \
            if log.is_file() else ""
        if not tail:
            shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"no PostgreSQL test server: {error}" + (f"\n{tail}" if tail else ""))
    try:
        yield url
    finally:
        stop(directory)  # raises (a teardown error) if the server is left running
        shutil.rmtree(directory, ignore_errors=True)
