"""What the tests' private daemons share (the Python side of scripts/daemon_lib.sh).

A private daemon (:mod:`postgres_server`, :mod:`slurm_cluster`) is a script under
``scripts/`` with the interface ``start|stop|status DIR``: all its state lives in DIR,
and ``stop DIR`` stops exactly what ``start DIR`` started, by PID. :class:`DaemonScript`
runs such a script; :func:`daemon_session` is the body of a session fixture: skip when
disabled or unavailable (with the end of the daemon's logs), start in a short folder
under /tmp, yield, stop and remove the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

__all__ = ["DaemonScript", "DaemonUnavailable", "daemon_session", "log_tail"]

T = TypeVar("T")


class DaemonUnavailable(RuntimeError):
    """The daemon could not start; the message says why (the script's last stderr line)."""


@dataclass(frozen=True)
class DaemonScript:
    """One ``scripts/*.sh start|stop|status DIR`` script.

    ``unavailable`` is the error :meth:`start` raises (a :class:`DaemonUnavailable`).
    """

    path: Path
    timeout_s: int
    unavailable: type[DaemonUnavailable] = DaemonUnavailable

    def run(self, action: str, directory: Path, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.path), action, str(directory)],
                              capture_output=True, text=True, timeout=self.timeout_s,
                              check=False, env=dict(os.environ if env is None else env))

    def start(self, directory: Path, env: Mapping[str, str] | None = None
              ) -> subprocess.CompletedProcess:
        """``start DIR``; raises :attr:`unavailable` with the script's reason (a start that
        times out is stopped first)."""
        if shutil.which("bash") is None:
            raise self.unavailable("bash is missing")
        try:
            result = self.run("start", directory, env)
        except subprocess.TimeoutExpired:
            self.stop(directory)
            raise self.unavailable(f"{self.path.name} start took over {self.timeout_s} s"
                                   ) from None
        if result.returncode != 0:
            raise self.unavailable(self.reason(result))
        return result

    def stop(self, directory: Path) -> None:
        """``stop DIR``; raises RuntimeError if something it started still runs."""
        result = self.run("stop", directory)
        if result.returncode != 0:
            raise RuntimeError(f"{self.path.name} stop {directory}: {result.stderr.strip()}")

    @staticmethod
    def reason(result: subprocess.CompletedProcess) -> str:
        """The last line of the script's stderr, else its exit status."""
        lines = result.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {result.returncode}"


def log_tail(directory: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of each log the daemons wrote in ``directory/log``."""
    parts = []
    for log in sorted((directory / "log").glob("*")):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        if text:
            parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)


@contextlib.contextmanager
def daemon_session(what: str, disable_variable: str, prefix: str,
                   start: Callable[[Path], T], stop: Callable[[Path], None]) -> Iterator[T]:
    """Start a daemon in a new folder under /tmp (short: unix socket paths), yield what
    ``start`` returns, then stop it and remove the folder.

    Skips (``no <what>: <reason>`` plus the end of its logs) when ``start`` raises
    :class:`DaemonUnavailable`, and without trying when ``disable_variable`` is set to
    anything but ``0``. A folder with logs is kept for a look. ``stop`` failing at the end
    is a teardown error: something was left running.
    """
    if os.environ.get(disable_variable, "") not in ("", "0"):
        pytest.skip(f"{disable_variable} is set")
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        value = start(directory)
    except DaemonUnavailable as error:
        tail = log_tail(directory)
        if not tail:  # nothing started (not root, packages missing): nothing to look at
            shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"no {what}: {error}" + (f"\n{tail}" if tail else ""))
    try:
        yield value
    finally:
        stop(directory)
        shutil.rmtree(directory, ignore_errors=True)
