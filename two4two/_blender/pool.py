"""Worker processes of the renderer: start, feed, watch, stop (no ``bpy`` here).

:class:`WorkerPool` starts ``n`` worker processes, each a fresh interpreter
running ``python -P -m two4two._blender.worker FD`` (see
:mod:`two4two._blender.worker` for the protocol), so no worker ever imports
the caller's ``__main__``. Each worker has its own socket pair; the pool
hands a chunk of tasks to the worker with the fewest tasks in flight, returns
the workers' ``result`` messages and turns everything else into
:class:`WorkerFailure` (a worker could not import ``bpy``, failed, or died —
a dead worker is reported with its exit status and the tail of its stderr
log). On :meth:`WorkerPool.terminate` it kills and reaps the workers, deletes
the temporary files they may have left in the output folders (marked by the
pool's token), and its RAM-disk scratch folder. The scratch folder's name
carries the pool's process (``two4two-render-pid<PID>-<host>-*``), so that a
pool starting later removes the folders of pools whose process was killed.
Pools still running when the interpreter exits are terminated by an ``atexit``
hook; workers whose parent dies exit on their own (end-of-file on the socket,
or a changed parent pid). Needs a POSIX system (inherited file descriptors). Design and guarantees:
``docs/two4two_render.md``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any

import two4two
from two4two._blender.worker import Task, WorkerConfig
from two4two.errors import Two4TwoError
from two4two.files import make_owned_temp_dir, remove_stale

__all__ = ["PoolSettings", "WorkerFailure", "WorkerPool", "worker_command"]

_POLL_S = 0.2
_JOIN_S = 10.0
_KILL_GRACE_S = 3.0
_LOG_TAIL_LINES = 15
_WORKER_MODULE = "two4two._blender.worker"
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                           signal.SIGABRT})
"""Signals by which a process crashes by itself (not killed from outside, as SIGKILL by
the out-of-memory killer or SIGTERM by a scheduler): a worker dying by one is a
``'crashed'`` failure, which the dataset writer retries with fresh workers."""


class WorkerFailure(Two4TwoError):
    """A worker could not import bpy (``kind='import'``), failed (``'error'``), crashed
    (``'crashed'``: died by one of :data:`CRASH_SIGNALS`) or died otherwise (``'died'``)."""

    def __init__(self, kind: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


@dataclass(frozen=True)
class PoolSettings:
    """What every worker of a pool gets."""

    n_processes: int
    threads: int
    device: str
    view_transform: str
    print_output: bool
    cycles_settings: Mapping[str, Any]


@dataclass
class _Worker:
    """One running worker process as the parent sees it."""

    worker_id: int
    process: subprocess.Popen
    conn: Connection
    log_path: str | None
    in_flight: int = 0  # tasks sent whose result has not come back


def _log_tail(path: str | None) -> str:
    if path is None or not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


_SCRATCH_PREFIX = "two4two-render-"


def _scratch_base() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _make_scratch_dir() -> str:
    """A new scratch folder for the workers' logs, after removing those of dead pools."""
    base = _scratch_base()
    remove_stale(base, f"{_SCRATCH_PREFIX}*")
    return str(make_owned_temp_dir(base, _SCRATCH_PREFIX))


def worker_command(fd: int) -> list[str]:
    """The command line of a worker that talks over the inherited file descriptor ``fd``.

    ``-P``: the working directory is not put on the worker's ``sys.path`` (the
    parent's ``sys.path`` is applied once the worker has its config).
    """
    if not sys.executable:
        raise WorkerFailure("error", "cannot start Blender workers: sys.executable is empty "
                            "(this Python cannot say where its interpreter is)")
    return [sys.executable, "-P", "-m", _WORKER_MODULE, str(fd)]


def _worker_env() -> dict[str, str]:
    """The parent's environment, with the folder holding ``two4two`` first on PYTHONPATH.

    That folder is added unless it is a site-packages folder (the worker finds
    those itself; putting one on PYTHONPATH would let it shadow the standard
    library), so a ``two4two`` found through the parent's own ``sys.path``
    (a checkout, ``sys.path.insert``) is the one the worker imports.
    """
    env = dict(os.environ)
    root = str(Path(two4two.__file__).resolve().parent.parent)
    site_dirs = {str(Path(p).resolve()) for p in
                 [*site.getsitepackages(), site.getusersitepackages()]}
    if root in site_dirs:
        return env
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *rest])
    return env


def _parent_sys_path() -> tuple[str, ...]:
    """The parent's ``sys.path`` for a worker, less the folders that Blender adds.

    Importing ``bpy`` appends Blender's script folders (``.../bpy/<version>/scripts/
    modules``, the user's ``.../blender/<version>/scripts/...``) to ``sys.path``; one
    of them holds Blender's pure-Python ``bpy`` package, which would shadow the
    compiled module in a fresh worker and fail there ("No module named '_bpy'").
    The worker's own ``import bpy`` adds them again in the right order.
    """
    def added_by_blender(entry: str) -> bool:
        parts = Path(entry).parts
        return "scripts" in parts and any(
            name in ("bpy", "blender") and i + 1 < len(parts) and parts[i + 1][:1].isdigit()
            for i, name in enumerate(parts))

    return tuple(p for p in sys.path if isinstance(p, str) and not added_by_blender(p))


_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _terminate_live_pools() -> None:
    for pool in list(_LIVE_POOLS):
        with contextlib.suppress(Exception):
            pool.terminate()


class WorkerPool:
    """``n`` Blender worker processes, one socket each (see the module docstring)."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.token = uuid.uuid4().hex[:12]
        self.devices: dict[int, str] = {}  # worker id -> Cycles device, once ready
        self._workers: list[_Worker] = []
        self._pending: deque[tuple] = deque()  # results read but not yet returned
        self._scratch_dir: str | None = None
        self._output_dirs: set[Path] = set()

    @property
    def started(self) -> bool:
        return bool(self._workers)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def start(self) -> None:
        """Start the workers (they build their scenes in the background)."""
        if self._workers:
            return
        self.devices = {}
        self._pending.clear()
        self._scratch_dir = _make_scratch_dir()
        _LIVE_POOLS.add(self)
        env = _worker_env()
        try:
            for worker_id in range(self.settings.n_processes):
                self._workers.append(self._start_worker(worker_id, env))
        except BaseException:
            self.terminate()
            raise

    def _start_worker(self, worker_id: int, env: dict[str, str]) -> _Worker:
        s = self.settings
        assert self._scratch_dir is not None
        log_path = (None if s.print_output
                    else os.path.join(self._scratch_dir, f"worker-{worker_id}.log"))
        parent_conn, child_conn = Pipe(duplex=True)
        fd = child_conn.fileno()
        try:
            command = worker_command(fd)
            with contextlib.ExitStack() as stack:
                if log_path is None:
                    stdout = stderr = None  # the parent's console
                else:
                    stdout = subprocess.DEVNULL  # Blender's progress lines
                    stderr = stack.enter_context(open(log_path, "ab"))
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=stdout,
                    stderr=stderr, pass_fds=(fd,), env=env,
                    # own process group (same session): a terminal's Ctrl-C reaches the
                    # parent only, and the CPU scheduler treats workers like the parent
                    process_group=0)
        except BaseException as error:
            parent_conn.close()
            if not isinstance(error, OSError):
                raise
            raise WorkerFailure("error", f"cannot start Blender worker {worker_id} "
                                f"({sys.executable} -m {_WORKER_MODULE}): {error}") from None
        finally:
            child_conn.close()
        config = WorkerConfig(
            worker_id=worker_id, threads=s.threads, device=s.device,
            view_transform=s.view_transform, scratch_dir=self._scratch_dir, token=self.token,
            parent_pid=os.getpid(), sys_path=_parent_sys_path(),
            cycles_settings=dict(s.cycles_settings))
        worker = _Worker(worker_id, process, parent_conn, log_path)
        with contextlib.suppress(OSError):  # a worker dead at once is reported by receive()
            parent_conn.send(config)
        return worker

    def watch_output_dir(self, folder: Path) -> None:
        """Remember a folder whose temporary files :meth:`terminate` must remove."""
        self._output_dirs.add(folder)

    def submit(self, call_id: int, chunk: list[Task]) -> None:
        """Hand ``chunk`` to the worker with the fewest tasks in flight."""
        worker = min(self._workers, key=lambda w: w.in_flight)
        try:
            worker.conn.send((call_id, chunk))
        except OSError:
            self._raise_died(worker)
        worker.in_flight += len(chunk)

    def receive(self) -> tuple:
        """The next ``("result", call_id, index, image, mask, timings)`` message.

        Raises:
            WorkerFailure: a worker reported an error or died.
        """
        while not self._pending:
            by_conn = {w.conn: w for w in self._workers}
            ready = wait(list(by_conn), timeout=_POLL_S)
            if not ready:
                self._check_exited()
                continue
            for conn in ready:
                worker = by_conn[conn]  # type: ignore[index]
                try:
                    message = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    self._raise_died(worker)
                if message[0] == "result":
                    worker.in_flight -= 1
                    self._pending.append(message)
                else:
                    self._handle_control(message)
        return self._pending.popleft()

    def _handle_control(self, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            self.devices[message[1]] = message[2]
        elif kind == "import_error":
            raise WorkerFailure("import", f"Blender worker {message[1]}: {message[2]}")
        elif kind == "error":
            raise WorkerFailure("error", f"Blender worker {message[1]}: {message[2]}", message[3])

    def _check_exited(self) -> None:
        """Report a worker that exited without closing its socket (it should not happen)."""
        for worker in self._workers:
            if worker.process.poll() is not None:
                self._raise_died(worker)

    def _raise_died(self, worker: _Worker) -> None:
        """Raise the :class:`WorkerFailure` of a worker whose socket closed."""
        try:
            code = worker.process.wait(_KILL_GRACE_S)
        except subprocess.TimeoutExpired:  # socket closed, process hangs: make it dead
            worker.process.kill()
            code = worker.process.wait()
        tail = _log_tail(worker.log_path)
        what = f"Blender worker {worker.worker_id} (pid {worker.process.pid})"
        if code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                name = ""
            cause = ("a crash inside the worker" if -code in CRASH_SIGNALS
                     else "e.g. the out-of-memory killer or a kill command")
            reason = f"died: killed by signal {-code}{name} ({cause})"
        else:
            reason = f"died with exit code {code}"
        state = ("after it had started (rendering again resumes where it stopped)"
                 if worker.worker_id in self.devices else "while starting Blender")
        if tail:
            hint = f"; last lines of its stderr:\n{tail}"
        elif worker.log_path is not None:
            hint = "; its stderr log is empty"
        else:
            hint = " (its output went to the console above)"
        kind = "crashed" if -code in CRASH_SIGNALS else "died"
        raise WorkerFailure(kind, f"{what} {reason} {state}{hint}", tail)

    def close(self) -> None:
        """Ask the workers to stop after their current image, then clean up."""
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(_JOIN_S)
        self._cleanup()

    def terminate(self) -> None:
        """Kill the workers now, remove their temporary files and the scratch folder."""
        for worker in self._workers:
            if worker.process.poll() is None:
                with contextlib.suppress(OSError):
                    worker.process.terminate()
        self._cleanup()

    def _cleanup(self) -> None:
        for worker in self._workers:
            try:
                worker.process.wait(_KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()
        self._workers = []
        self._pending.clear()
        self.devices = {}
        _LIVE_POOLS.discard(self)
        for folder in self._output_dirs:
            for tmp in folder.glob(f".*.{self.token}.tmp*"):
                tmp.unlink(missing_ok=True)
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None
