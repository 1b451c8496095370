"""Small, full and read-only file systems for the tests (a real tmpfs).

:class:`SmallDisk` mounts a tmpfs of a few MiB on a folder of the test's
``tmp_path``, can fill it to the last byte (:meth:`SmallDisk.fill`) or remount
it read-only (:meth:`SmallDisk.read_only`), and unmounts it at the end. That
needs root (or ``CAP_SYS_ADMIN``), which CI's machine has; elsewhere the
``small_disk`` fixture skips with the reason, and the in-process tests use
:func:`failing_writes` instead, a fault-injecting writer that makes writes
fail as a full disk would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["DiskUnavailable", "SmallDisk", "failing_writes", "mount_small_disk"]


class DiskUnavailable(RuntimeError):
    """No tmpfs can be mounted here."""


class SmallDisk:
    """A tmpfs of ``size_kib`` KiB mounted on ``path`` (see the module docstring)."""

    def __init__(self, path: Path, size_kib: int = 4096) -> None:
        self.path = path
        self.size_kib = size_kib
        self.mounted = False

    def mount(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kib}k,mode=0777", "tmpfs",
             str(self.path)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DiskUnavailable(result.stderr.strip() or f"mount exited {result.returncode}")
        self.mounted = True
        return self

    def fill(self, leave_bytes: int = 0) -> None:
        """Fill the disk with a hidden filler file so that about ``leave_bytes`` stay free."""
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize
        filler = self.path / ".filler"
        with open(filler, "ab") as handle:
            chunk = b"\0" * 65536
            remaining = max(0, free - leave_bytes)
            try:
                while remaining > 0:
                    remaining -= handle.write(chunk[:remaining])
                    handle.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise

    def free_space(self) -> None:
        (self.path / ".filler").unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        flag = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{flag}", str(self.path)], check=True,
                       capture_output=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False


@contextlib.contextmanager
def mount_small_disk(path: Path, size_kib: int = 4096) -> Iterator[SmallDisk]:
    """A mounted :class:`SmallDisk`; skips the test (with the reason) where none can be."""
    disk = SmallDisk(path, size_kib)
    try:
        disk.mount()
    except (DiskUnavailable, OSError) as error:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {error}")
    try:
        yield disk
    finally:
        disk.unmount()


@contextlib.contextmanager
def failing_writes(monkeypatch: pytest.MonkeyPatch, after: int = 0,
                   code: int = errno.ENOSPC) -> Iterator[list[Path]]:
    """Make the atomic writer fail with ``code`` (as a full disk does at ``fsync``) for
    every file after the first ``after`` ones; yields the list of files it failed.

    The fallback where no tmpfs can be mounted: it covers everything written
    through :mod:`two4two.files` (checkpoints, configs, JSON, figures, plans).
    """
    import two4two.files as files

    real_finish = files._finish_temp
    seen: list[Path] = []
    failed: list[Path] = []

    def finish(tmp: Path) -> None:
        seen.append(tmp)
        if len(seen) > after:
            failed.append(tmp)
            raise OSError(code, os.strerror(code), str(tmp))
        real_finish(tmp)

    with monkeypatch.context() as patch:
        patch.setattr(files, "_finish_temp", finish)
        yield failed
