"""Crash-safe file writes, shared by :mod:`two4two` and :mod:`dubfiv`.

An atomic write leaves the old file or the new one, never a truncated one: the
data goes to a temporary file beside the target, is flushed to disk (fsync) and
renamed over it; on any error the temporary file is removed. New files get the
usual permissions (``0o666`` less the umask), not the ``0o600`` of a temporary
file. This module imports only the standard library.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "append_line",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_lines",
    "atomic_write_text",
    "umask",
]


def umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    For writers that want a path (``torch.save``, ``savefig``, ``tarfile``). The
    parent folder is created if needed; the data is fsynced before the rename. If
    ``write`` raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_lines(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write ``lines`` (each without its newline) atomically, one per line."""
    return atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line + "\\n"`` to ``path`` in one ``write`` call, then fsync.

    A Ctrl-C or a kill leaves whole lines only (a resumable writer reads the file
    back); a new file gets the usual permissions (``0o666`` less the umask).
    """
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
