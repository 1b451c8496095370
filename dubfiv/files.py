"""Atomic file writes: a crash or Ctrl-C leaves the old file or the new one, never a
truncated one, and the new file gets the usual permissions (``0o666`` minus the umask,
not the ``0o600`` of a temporary file)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "umask"]


def umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The parent folder is created if needed; the data is flushed to disk (fsync)
    before the rename. If ``write`` raises, the temporary file is removed and
    ``path`` is untouched.
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


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: :func:`two4two.utils.atomic_write_text`,
    which does the same as :func:`atomic_write` (temporary file beside ``path``, fsync,
    the umask's permissions, rename; removed on failure). Imported when called, as
    :mod:`two4two` brings scipy along."""
    from two4two.utils import atomic_write_text as write_text

    return write_text(path, text)
