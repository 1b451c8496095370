"""Worker processes of the renderer: start, feed, watch, stop (no ``bpy`` here).

:class:`WorkerPool` starts ``n`` :func:`two4two._blender.worker.worker_main`
processes with the ``spawn`` method, sends them chunks of tasks, returns
their ``result`` messages and turns everything else into
:class:`WorkerFailure` (a worker could not import ``bpy``, failed, or died).
On :meth:`WorkerPool.terminate` it kills the workers and deletes the
temporary files they may have left in the output folders (marked by the
pool's token), and its RAM-disk scratch folder.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from two4two._blender.worker import Task, WorkerConfig, worker_main
from two4two.errors import Two4TwoError

__all__ = ["PoolSettings", "WorkerFailure", "WorkerPool"]

_POLL_S = 0.2
_JOIN_S = 10.0
_LOG_TAIL_LINES = 15


class WorkerFailure(Two4TwoError):
    """A worker could not import bpy (``kind='import'``), failed (``'error'``) or died."""

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


def _log_tail(path: str | None) -> str:
    if path is None or not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _scratch_base() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class WorkerPool:
    """``n`` Blender worker processes and their two queues (see the module docstring)."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.token = uuid.uuid4().hex[:12]
        self.devices: dict[int, str] = {}  # worker id -> Cycles device, once ready
        self._processes: list[Any] = []
        self._log_paths: list[str | None] = []
        self._scratch_dir: str | None = None
        self._tasks: Any = None
        self._results: Any = None
        self._output_dirs: set[Path] = set()

    @property
    def started(self) -> bool:
        return bool(self._processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def start(self) -> None:
        """Spawn the workers (they build their scenes in the background)."""
        if self._processes:
            return
        self.devices = {}
        self._scratch_dir = tempfile.mkdtemp(prefix="two4two-render-", dir=_scratch_base())
        context = multiprocessing.get_context("spawn")
        self._tasks, self._results = context.Queue(), context.Queue()
        s = self.settings
        for worker_id in range(s.n_processes):
            log_path = (None if s.print_output
                        else os.path.join(self._scratch_dir, f"worker-{worker_id}.log"))
            config = WorkerConfig(
                worker_id=worker_id, threads=s.threads, device=s.device,
                view_transform=s.view_transform, scratch_dir=self._scratch_dir,
                log_path=log_path, token=self.token, cycles_settings=dict(s.cycles_settings),
            )
            process = context.Process(target=worker_main, args=(config, self._tasks, self._results),
                                      name=f"two4two-blender-{worker_id}", daemon=True)
            process.start()
            self._processes.append(process)
            self._log_paths.append(log_path)

    def watch_output_dir(self, folder: Path) -> None:
        """Remember a folder whose temporary files :meth:`terminate` must remove."""
        self._output_dirs.add(folder)

    def submit(self, call_id: int, chunk: list[Task]) -> None:
        self._tasks.put((call_id, chunk))

    def receive(self) -> tuple:
        """The next ``("result", call_id, index, image, mask, timings)`` message.

        Raises:
            WorkerFailure: a worker reported an error or died.
        """
        while True:
            try:
                message = self._results.get(timeout=_POLL_S)
            except queue.Empty:
                self._check_workers()
                continue
            if message[0] == "result":
                return message
            self._handle_control(message)

    def _handle_control(self, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            self.devices[message[1]] = message[2]
        elif kind == "import_error":
            raise WorkerFailure("import", f"Blender worker {message[1]}: {message[2]}")
        elif kind == "error":
            raise WorkerFailure("error", f"Blender worker {message[1]}: {message[2]}", message[3])

    def _check_workers(self) -> None:
        for worker_id, process in enumerate(self._processes):
            if process.exitcode is None:
                continue
            with contextlib.suppress(queue.Empty):  # an error sent just before exiting
                while True:
                    message = self._results.get(timeout=_POLL_S)
                    if message[0] != "result":
                        self._handle_control(message)
            tail = _log_tail(self._log_paths[worker_id])
            if tail:
                hint = f"; last lines of its stderr:\n{tail}"
            elif worker_id in self.devices:  # it had started: killed or crashed mid-render
                signal = (f" (signal {-process.exitcode}: killed, e.g. by the out-of-memory "
                          "killer)" if process.exitcode < 0 else "")
                hint = (f"{signal}; it left no log. Rendering again resumes where it "
                        "stopped")
            else:
                hint = ("; it left no log (see stderr above). Scripts that render must guard "
                        "their main code with `if __name__ == '__main__':` because workers "
                        "are spawned")
            raise WorkerFailure(
                "died", f"Blender worker {worker_id} (pid {process.pid}) died with exit code "
                f"{process.exitcode}{hint}", tail)

    def close(self) -> None:
        """Ask the workers to stop after their current image, then clean up."""
        if self._processes:
            for _ in self._processes:
                self._tasks.put(None)
            for process in self._processes:
                process.join(_JOIN_S)
        self._cleanup()

    def terminate(self) -> None:
        """Kill the workers now, remove their temporary files and the scratch folder."""
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        self._cleanup()

    def _cleanup(self) -> None:
        for process in self._processes:
            process.join(_JOIN_S)
            if process.is_alive():
                process.kill()
                process.join(_JOIN_S)
        self._processes, self._log_paths = [], []
        for folder in self._output_dirs:
            for tmp in folder.glob(f".*.{self.token}.tmp*"):
                tmp.unlink(missing_ok=True)
        for q in (self._tasks, self._results):
            if q is not None:
                q.close()
                q.cancel_join_thread()
        self._tasks = self._results = None
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None
