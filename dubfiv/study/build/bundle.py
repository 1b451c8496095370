"""Build a study folder atomically and describe it with ``manifest.json``.

:func:`build_atomically` builds into a temporary folder beside the
destination and only then puts it in place, so a failed build changes nothing
at the destination and a rerun replaces the old folder in one step (an atomic
``renameat2(RENAME_EXCHANGE)`` on Linux where the file system supports it,
else two renames microseconds apart). An existing, non-empty destination is
only replaced if it holds a ``manifest.json`` (i.e. it is an earlier build), so
``--output ~`` cannot wipe a home folder.

The temporary folders (``.<dest>.building-*``, which hold the answers in
``records/``, ``.<dest>.old-*`` and ``.<dest>.probe-*``) carry their owner's
pid and host (:func:`two4two.files.make_owned_temp_dir`); a build removes
those of the same destination whose process is dead (a build killed with
``kill -9`` or by a power cut), never those of a build still running. A full
or read-only disk is a :class:`BundleError` naming the destination and the
fix; the temporary folder is removed and the destination left as it was.

:func:`write_manifest` lists every file (relative path, bytes, sha256) with the
run, config, command line and library version they came from;
:func:`verify_manifest` re-checks a folder against it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import errno
import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from dubfiv.errors import DubfivError
from dubfiv.files import atomic_write_text
from two4two.files import describe_os_error, make_owned_temp_dir, remove_stale

__all__ = [
    "MANIFEST",
    "TEMP_KINDS",
    "BundleError",
    "build_atomically",
    "check_writable",
    "remove_leftovers",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "dubfiv-study-manifest"
TEMP_KINDS = ("building", "old", "probe")
"""The temporary folders beside a destination: ``.<dest>.<kind>-pid<PID>-<host>-<random>``."""
T = TypeVar("T")
#: Errors of a disk that cannot take the build (as opposed to a bad input file).
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class BundleError(DubfivError, RuntimeError):
    """The output folder cannot be written or replaced."""


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path):
        path = path.parent
    return path


def check_writable(dest: str | os.PathLike[str], replace_marker: str | None = MANIFEST) -> None:
    """Fail early (:class:`BundleError`) if ``dest`` cannot be built and put in place.

    ``dest`` may not exist yet (its missing parents are created later); if it
    exists it must be a folder that is empty or holds ``replace_marker`` (an
    earlier build; ``None`` disables this guard). Writability is probed by
    creating and removing a folder where the build will happen (``os.access``
    is not trusted: it says yes to root on read-only mounts).
    """
    dest = Path(dest).absolute()
    if os.path.lexists(dest):
        if dest.is_symlink() or not dest.is_dir():
            raise BundleError(f"output {dest} exists and is not a folder; choose another path")
        if (replace_marker is not None and any(dest.iterdir())
                and not (dest / replace_marker).is_file()):
            raise BundleError(
                f"output folder {dest} is not empty and has no {replace_marker}, so it was "
                "not written by this tool; refusing to replace it (choose a new folder)")
    anchor = _nearest_existing(dest.parent)
    if not anchor.is_dir():
        raise BundleError(f"cannot create {dest}: {anchor} is not a folder")
    try:
        probe = make_owned_temp_dir(anchor, f".{dest.name}.probe-")
        os.rmdir(probe)
    except OSError as exc:
        raise BundleError(f"cannot write in {_described(exc, anchor)}") from exc


def _described(exc: OSError, path: Path) -> str:
    """``<path>: <reason>; <fix>`` (:func:`~two4two.files.describe_os_error` naming ``path``)."""
    reason = exc.strerror or str(exc)
    return describe_os_error(OSError(exc.errno, reason, str(path)),
                             otherwise="choose another output folder")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2 (Linux); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def _put_in_place(built: Path, dest: Path) -> None:
    """Move ``built`` to ``dest``, replacing an existing ``dest`` folder."""
    if not os.path.lexists(dest):
        os.rename(built, dest)
        return
    if _exchange(built, dest):  # now `built` holds the old folder
        shutil.rmtree(built, ignore_errors=True)
        return
    holder = make_owned_temp_dir(dest.parent, f".{dest.name}.old-")
    os.rename(dest, holder / "old")
    try:
        os.rename(built, dest)
    except OSError:
        os.rename(holder / "old", dest)
        shutil.rmtree(holder, ignore_errors=True)
        raise
    shutil.rmtree(holder, ignore_errors=True)


def remove_leftovers(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary folders of earlier builds of ``dest`` whose process is dead.

    Returns what was removed; folders of a build still running (on this host or,
    as their owner cannot be checked, on another) are kept.
    """
    dest = Path(dest).absolute()
    removed: list[Path] = []
    for kind in TEMP_KINDS:
        try:
            removed += remove_stale(dest.parent, f".{dest.name}.{kind}-*")
        except OSError:  # a read-only parent: nothing can be cleaned, nothing will be built
            continue
    return removed


def _disk_error(exc: OSError, dest: Path, tmp: Path | None) -> BundleError | None:
    """A :class:`BundleError` for a full or read-only disk under the build, else ``None``
    (an error reading the input stays what it is)."""
    if exc.errno not in _DISK_ERRNOS:
        return None
    if exc.filename is not None and tmp is not None:
        where = Path(os.fsdecode(exc.filename)).absolute()
        if not where.is_relative_to(tmp) and not where.is_relative_to(dest.parent):
            return None
    return BundleError(f"cannot write the study folder {_described(exc, dest)}")


def build_atomically(dest: str | os.PathLike[str], build_fn: Callable[[Path], T],
                     replace_marker: str | None = MANIFEST) -> T:
    """Run ``build_fn(tmp)`` on a fresh folder beside ``dest``, then make it ``dest``.

    Returns what ``build_fn`` returns. If it raises, the temporary folder is
    removed and ``dest`` is untouched; a full or read-only disk raises
    :class:`BundleError`. The folder is private (0700) while it is built and gets
    mode 0755 when it is put in place. Leftovers of killed builds of ``dest``
    are removed first (:func:`remove_leftovers`).
    """
    dest = Path(dest).absolute()
    check_writable(dest, replace_marker)
    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(dest)
        tmp = make_owned_temp_dir(dest.parent, f".{dest.name}.building-")
        result = build_fn(tmp)
        check_writable(dest, replace_marker)  # it may have changed during the build
        os.chmod(tmp, 0o755)
        _put_in_place(tmp, dest)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        error = _disk_error(exc, dest, tmp) if isinstance(exc, OSError) else None
        if error is not None:
            raise error from exc
        raise
    return result


# ---------------------------------------------------------------------- manifest


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _listing(folder: Path) -> list[dict[str, Any]]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        if path.is_symlink():
            raise BundleError(f"{path} is a symbolic link; a study folder holds plain files")
        files.append({"path": rel, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return files


def write_manifest(folder: str | os.PathLike[str], run_dir: str | os.PathLike[str] | None,
                   config_path: str | os.PathLike[str] | None,
                   command_line: str | Sequence[str], version: str | None = None
                   ) -> dict[str, Any]:
    """Write ``folder/manifest.json`` listing every other file; return its content.

    ``run_dir`` and ``config_path`` are recorded as absolute paths (the config
    with its sha256 when it is a file); ``command_line`` as a list of
    arguments and as one shell-quoted string; ``version`` defaults to
    ``dubfiv.__version__``.
    """
    folder = Path(folder)
    if version is None:
        from dubfiv import __version__ as version
    args = shlex.split(command_line) if isinstance(command_line, str) else list(command_line)
    config: dict[str, Any] | None = None
    if config_path is not None:
        cfg = Path(config_path).absolute()
        config = {"path": str(cfg), "sha256": sha256_file(cfg) if cfg.is_file() else None}
    manifest = {
        "format": MANIFEST_FORMAT, "format_version": 1,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "library": {"name": "dubfiv", "version": version},
        "command_line": {"args": args, "string": shlex.join(args)},
        "run": None if run_dir is None else {"path": str(Path(run_dir).absolute()),
                                             "name": Path(run_dir).absolute().name},
        "config": config,
        "files": _listing(folder),
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify_manifest(folder: str | os.PathLike[str]) -> list[str]:
    """Problems of ``folder`` against its manifest (empty list: all files match).

    Reports a missing or unreadable manifest, listed files that are missing or
    differ in size or sha256, unsafe paths, and files not listed.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(entries, list):
            raise ValueError("not a study manifest")
    except FileNotFoundError:
        return [f"{path} is missing"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{path} is not a readable manifest: {exc}"]
    problems: list[str] = []
    listed: set[str] = set()
    for entry in entries:
        rel = str(entry.get("path", ""))
        pure = PurePosixPath(rel)
        if not rel or pure.is_absolute() or ".." in pure.parts:
            problems.append(f"unsafe path {rel!r} in the manifest")
            continue
        listed.add(rel)
        file = folder / rel
        if not file.is_file():
            problems.append(f"{rel}: listed but missing")
        elif file.stat().st_size != entry.get("bytes"):
            problems.append(f"{rel}: {file.stat().st_size} bytes, manifest says "
                            f"{entry.get('bytes')}")
        elif sha256_file(file) != entry.get("sha256"):
            problems.append(f"{rel}: sha256 differs from the manifest (file changed)")
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder).as_posix()
        if file.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}: present but not in the manifest")
    return problems

