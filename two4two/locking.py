"""Exclusive locks on folders: one writer per dataset or run folder.

:class:`FolderLock` takes an advisory ``flock`` on a hidden file in the folder
(e.g. ``<dataset>/.two4two_render.lock``) and writes who holds it (pid, host,
start time, command) into that file. A second process that asks for the same
lock gets an error naming the holder at once instead of waiting. The kernel
releases the lock when its holder dies, however it dies (``kill -9``
included), so a lock left by a dead process is simply taken over; the file is
removed when the lock is released. Network file systems (NFS) carry ``flock``
between hosts on Linux; where a file system has no locks at all the folder is
used unlocked and a warning says so (``docs/reliability.md``).

Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from two4two.errors import Two4TwoError
from two4two.files import naming_the_file

__all__ = ["FolderLock", "FolderLockedError", "LockHolder", "LockUnavailableWarning"]


class FolderLockedError(Two4TwoError, RuntimeError):
    """Another process holds the folder's lock; ``holder`` says who (may be ``None``)."""

    def __init__(self, message: str, holder: LockHolder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LockUnavailableWarning(UserWarning):
    """The file system cannot lock files; the folder is used without a lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as written into the lock file."""

    pid: int
    host: str
    since: str  # UTC, ISO 8601
    command: str

    def describe(self) -> str:
        here = self.host == socket.gethostname()
        where = "this machine" if here else f"host {self.host}"
        return f"{self.command} (pid {self.pid} on {where}, since {self.since})"

    @classmethod
    def read(cls, path: Path) -> LockHolder | None:
        """The holder recorded in ``path`` (``None`` if unreadable or being written)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["pid"]), str(data["host"]), str(data["since"]),
                       str(data["command"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _command_name() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return name if name not in ("", "-c", "-m") else "python"


class FolderLock:
    """An exclusive, non-blocking lock on ``folder`` (a context manager).

    Args:
        folder: the folder to lock (created if missing).
        name: the lock file's name inside it.
        purpose: what the holder does, for the error message (e.g. ``"rendering"``).
        error: the exception class raised when the folder is locked (a subclass of
            :class:`FolderLockedError`, or any exception taking a message).
    """

    def __init__(self, folder: str | os.PathLike, name: str = ".lock",
                 purpose: str = "writing", error: type[Exception] = FolderLockedError) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.purpose = purpose
        self.error = error
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise ``error`` naming its holder and the way out."""
        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._locked() from None
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                warnings.warn(f"{self.folder}: the file system cannot lock files; make sure "
                              f"no other process is {self.purpose} this folder",
                              LockUnavailableWarning, stacklevel=2)
                return
            except BaseException:
                os.close(fd)
                raise
            if self._same_file(fd):
                break
            os.close(fd)  # the holder removed the file as we opened it: try again
        self._fd = fd
        try:
            self._write_holder(fd)
        except BaseException:
            self.release()
            raise

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_holder(self, fd: int) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                  "command": _command_name(), "purpose": self.purpose}
        data = (json.dumps(holder) + "\n").encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as error:  # a full disk: name the lock file
            raise naming_the_file(error, self.path) from None

    def _locked(self) -> Exception:
        holder = LockHolder.read(self.path)
        who = holder.describe() if holder is not None else "another process"
        fix = (f"wait for it to finish, or stop it (kill {holder.pid}) and run again; a "
               "stopped run resumes" if holder is not None
               else "wait for it to finish and run again")
        message = f"{self.folder} is in use: {who} is {self.purpose} it; {fix}"
        if isinstance(self.error, type) and issubclass(self.error, FolderLockedError):
            return self.error(message, holder)
        return self.error(message)

    def release(self) -> None:
        """Remove the lock file and release the lock (no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if self._same_file(fd):
                os.unlink(self.path)
        os.close(fd)
