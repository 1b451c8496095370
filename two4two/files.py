"""Crash-safe file writes, shared by :mod:`two4two` and :mod:`dubfiv`.

An atomic write leaves the old file or the new one, never a truncated one: the
data goes to a temporary file beside the target, is flushed to disk (fsync) and
renamed over it; on any error the temporary file is removed. New files get the
usual permissions (``0o666`` less the umask), not the ``0o600`` of a temporary
file. This module imports only the standard library.

Temporary files and folders carry their owner in their name
(:func:`owner_tag`: ``pid<PID>-<host key>``), so that a later run can tell a
leftover of a killed process from the work of one still running:
:func:`remove_stale` deletes only those whose process is dead on this host
(``docs/reliability.md``). :func:`atomic_write_many` puts several files in place
together (all temporary files first, then the renames), so that a full disk
leaves the old set, never a mix. :func:`describe_os_error` words a failed
write (full disk, read-only file system, no permission) as one line that names
the path and the fix; :func:`read_toml` reads a TOML file with such errors.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "append_line",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_lines",
    "atomic_write_many",
    "atomic_write_text",
    "describe_os_error",
    "make_owned_temp_dir",
    "naming_the_file",
    "owner_is_dead",
    "owner_tag",
    "pid_is_alive",
    "read_toml",
    "remove_stale",
    "umask",
]


# --------------------------------------------------------------------------- owners


def _host_key(host: str | None = None) -> str:
    """8 hex digits naming a host (a hash: host names can hold dots and be long)."""
    name = socket.gethostname() if host is None else host
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]


def owner_tag() -> str:
    """``pid<PID>-<host key>``: marks a temporary file or folder as this process's."""
    return f"pid{os.getpid()}-{_host_key()}"


_OWNER = re.compile(r"pid(\d+)-([0-9a-f]{8})(?![0-9a-f])")


def pid_is_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (a zombie, dead but not yet reaped by
    its parent, counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux): trust kill()
        return True
    return state not in ("Z", "X")


def owner_is_dead(name: str) -> bool:
    """Whether ``name`` carries an :func:`owner_tag` of this host whose process is gone.

    ``False`` for names without a tag, and for tags of other hosts (their
    processes cannot be checked from here): such leftovers are kept.
    """
    match = _OWNER.search(name)
    if match is None or match.group(2) != _host_key():
        return False
    return int(match.group(1)) != os.getpid() and not pid_is_alive(int(match.group(1)))


def remove_stale(folder: str | os.PathLike, pattern: str) -> list[Path]:
    """Delete the entries of ``folder`` matching the glob ``pattern`` whose owner is dead.

    Files are unlinked and folders removed with their content; entries of live
    owners (another run still writing) and untagged ones are left alone.
    Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(pattern):
        if not owner_is_dead(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def make_owned_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder ``<parent>/<prefix><owner tag>-<random>`` (mode 0700, as ``mkdtemp``)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}-", dir=parent))


# --------------------------------------------------------------------------- errors


_OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space there or choose a folder on another disk",
    errno.EDQUOT: "free some space within your quota or choose another folder",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you own or fix its permissions",
    errno.EPERM: "permission denied; choose a folder you own or fix its permissions",
}


def describe_os_error(error: OSError, otherwise: str | None = None) -> str:
    """One line for a failed file operation: the path, what went wrong, and the fix.

    ``models/models.torch: No space left on device; free some space there or
    choose a folder on another disk``. ``otherwise`` is the fix for errors
    without one of their own (e.g. ``"choose another output folder"``).
    """
    reason = error.strerror or str(error) or type(error).__name__
    where = error.filename
    text = f"{where}: {reason}" if where is not None else f"file error: {reason}"
    fix = _OS_ERROR_FIXES.get(error.errno or 0, otherwise)
    return f"{text}; {fix}" if fix else text


_TOML_POSITION = re.compile(r"^(?P<reason>.*?)\s*\(at (?P<where>line \d+, column \d+|end of "
                            r"document)\)$", re.DOTALL)


def read_toml(path: str | os.PathLike, error: type[Exception] = ValueError,
              what: str = "") -> dict[str, Any]:
    """The parsed TOML file ``path``; any problem raises ``error`` with one line naming
    the file, where it is wrong and the fix.

    Args:
        path: the file.
        error: the exception class to raise (the caller's own; it takes a message).
        what: a prefix naming the file's role, e.g. ``"`grid_file` "``.

    Raises:
        error: the file is missing or a folder, cannot be read, is not UTF-8 text
            (the message gives the line), or is not valid TOML (the message gives
            line and column, as ``... not valid TOML at line 3, column 7: ...``).
    """
    path = Path(path)
    name = f"{what}{path}"
    if not path.exists():
        raise error(f"{name}: file not found; check the path")
    if path.is_dir():
        raise error(f"{name}: is a folder; give the path of the TOML file")
    try:
        data = path.read_bytes()
    except OSError as os_error:
        raise error(f"{what}{describe_os_error(naming_the_file(os_error, path))}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        line = data[: decode_error.start].count(b"\n") + 1
        raise error(f"{name}: not UTF-8 text (line {line}, byte {decode_error.start}); "
                    "save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as toml_error:
        match = _TOML_POSITION.match(str(toml_error))
        reason, where = (match["reason"], match["where"]) if match else (str(toml_error), "")
        at = f" at {where}" if where else ""
        raise error(f"{name}: not valid TOML{at}: {reason}; correct the TOML there "
                    "(https://toml.io)") from None


def naming_the_file(error: OSError, path: str | os.PathLike) -> OSError:
    """``error`` with ``path`` as its file name (a failed ``write`` names none), so that
    :func:`describe_os_error` says which file could not be written."""
    if error.errno is None:
        return error
    named = OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))
    named.__cause__ = error
    return named


def _temp_beside(path: Path) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}.",
                                    suffix=".tmp")
    os.close(fd)
    return Path(tmp_name)


def _finish_temp(tmp: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o666 & ~umask())


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
    try:
        tmp = _temp_beside(path)
    except OSError as error:
        raise naming_the_file(error, path) from None
    try:
        write(tmp)
        _finish_temp(tmp)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise naming_the_file(error, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_many(writers: Mapping[str | os.PathLike, Callable[[Path], None]]
                      ) -> list[Path]:
    """Write several files so that they change together: each ``write(tmp)`` first,
    then all renames.

    If any writer fails (a full disk, say), every temporary file is removed and
    all targets keep their old content. Renames need no space, so only a crash
    between them can leave a mix. Temporary files are named as :func:`atomic_write`'s.
    """
    temps: list[tuple[Path, Path]] = []
    path = Path()
    try:
        for target, write in writers.items():
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_beside(path)
            temps.append((tmp, path))
            write(tmp)
            _finish_temp(tmp)
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException as error:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise naming_the_file(error, path) from None
        raise
    return [path for _, path in temps]


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
    except OSError as error:
        raise naming_the_file(error, Path(path)) from None
    finally:
        os.close(fd)
