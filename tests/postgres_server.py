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
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from private_daemon import DaemonScript, DaemonUnavailable, daemon_session


class PostgresUnavailable(DaemonUnavailable):
    """The server could not start; the message says why."""


#: scripts/postgres_local.sh, with the seconds it may take to start or stop the server
SCRIPT = DaemonScript(Path(__file__).resolve().parents[1] / "scripts" / "postgres_local.sh",
                      timeout_s=120, unavailable=PostgresUnavailable)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the kernel's choice, so two
    test sessions starting at once do not both take the script's first free port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(directory: Path) -> str:
    """Start the server in ``directory`` and return its URL; raises
    :class:`PostgresUnavailable` with the script's reason."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install 'psycopg[binary]')"
                                  ) from None
    result = SCRIPT.start(directory, {**os.environ, "DUBFIV_PG_PORT": str(free_port())})
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise PostgresUnavailable(f"{SCRIPT.path.name} start printed no URL "
                                  f"({SCRIPT.reason(result)})")
    return lines[-1]


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
    with daemon_session("PostgreSQL test server", "DUBFIV_TEST_NO_POSTGRES", "dubfiv-pg-",
                        start, SCRIPT.stop) as url:
        yield url
