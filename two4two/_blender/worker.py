"""The render worker: one process, one Blender (``bpy``), one scene built once.

The parent (:class:`two4two._blender.pool.WorkerPool`) starts each worker as a
fresh interpreter running this module::

    python -P -m two4two._blender.worker FD

so the worker never imports the caller's ``__main__`` (unlike a
``multiprocessing`` ``spawn``): rendering works from ``python -c``, a script
on stdin, a script without an ``if __name__ == "__main__":`` guard and a
notebook. ``FD`` is the worker's end of a socket pair inherited from the
parent; messages travel over it as pickled frames
(:class:`multiprocessing.connection.Connection`). Nothing else uses it, so
Blender's own console output (``bpy`` prints to fd 1) cannot corrupt the
protocol; the parent points the worker's stdout at ``/dev/null`` and its
stderr at a log file, or leaves both alone when ``print_output``.

Parent -> worker: first one :class:`WorkerConfig`, then ``(call_id, [Task, ...])``
per chunk, ``None`` to stop.
Worker -> parent, tuples tagged by their first entry:

* ``("ready", worker_id, device)`` once the scene is built;
* ``("result", call_id, index, image, mask, timings)`` per image, in the
  order the worker finished them; ``image`` uint8 ``[H, W, 3]``, ``mask`` uint8
  ``[H, W]`` (already flipped if ``fliplr``), ``timings`` a dict of seconds;
* ``("import_error", worker_id, message)`` if ``bpy`` cannot be imported;
* ``("error", worker_id, message, traceback)`` if anything else fails.

Workers ignore SIGINT (Ctrl-C reaches the parent, which stops them), exit when
the parent closes its end of the socket or the parent process disappears, and
write output files atomically: a temporary file ``.<name>.<token>.tmp`` in
the target folder, then ``os.replace``. The parent removes such temporary
files (by its ``token``) after killing workers.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from two4two._blender.spec import RenderSpec

__all__ = ["Task", "WorkerConfig", "main", "serve", "temp_path", "write_png_atomic"]

_PARENT_POLL_S = 0.5
_ORPHAN_EXIT_CODE = 3


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of one worker process (sent pickled as the first message)."""

    worker_id: int
    threads: int
    device: str
    view_transform: str
    scratch_dir: str
    token: str  # marks this renderer's temporary files
    parent_pid: int  # the worker exits when its parent is no longer this process
    sys_path: tuple[str, ...] = ()  # the parent's sys.path, searched first (e.g. for bpy)
    cycles_settings: dict[str, Any] = field(default_factory=dict)  # extra scene.cycles values


@dataclass(frozen=True)
class Task:
    """One image to render; paths are None when nothing is written."""

    index: int
    spec: RenderSpec
    samples: int
    image_path: str | None = None
    mask_path: str | None = None
    blend_path: str | None = None


def temp_path(path: str | os.PathLike, token: str) -> Path:
    """Temporary sibling of ``path`` used while writing it: ``.<name>.<token>.tmp<suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{token}.tmp{path.suffix}")


def write_png_atomic(path: str | os.PathLike, array: np.ndarray, token: str) -> None:
    """Write ``array`` (uint8 ``[H, W, 3]`` RGB or ``[H, W]`` grey) as PNG via temp + rename."""
    tmp = temp_path(path, token)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _render_task(scene: Any, task: Task, token: str) -> tuple[np.ndarray, np.ndarray, dict]:
    scene.set_samples(task.samples)
    scene.update(task.spec)
    image, mask = scene.render()
    if task.spec.fliplr:
        image, mask = image[:, ::-1], mask[:, ::-1]
    image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
    start = time.perf_counter()
    if task.image_path is not None:
        write_png_atomic(task.image_path, image, token)
    if task.mask_path is not None:
        write_png_atomic(task.mask_path, mask, token)
    png = time.perf_counter() - start
    if task.blend_path is not None:
        tmp = temp_path(task.blend_path, token)
        try:
            scene.save_blend(tmp)
            os.replace(tmp, task.blend_path)
        finally:
            tmp.unlink(missing_ok=True)
    t = scene.timings
    timings = {"update": t.update, "render": t.render, "render_cpu": t.render_cpu,
               "image": t.image, "mask": t.mask, "png": png}
    return image, mask, timings


def _use_parent_path(entries: tuple[str, ...]) -> None:
    """Search the parent's ``sys.path`` first, as a spawned process would."""
    if entries:
        sys.path[:] = list(entries) + [p for p in sys.path if p not in entries]


def _exit_when_orphaned(parent_pid: int) -> None:
    """Watch (in a daemon thread) for the parent's death; then exit at once.

    The socket's end-of-file stops a worker waiting for work; this also stops
    one that is busy with a chunk when its parent is killed.
    """
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(_ORPHAN_EXIT_CODE)
            time.sleep(_PARENT_POLL_S)

    threading.Thread(target=watch, name="two4two-parent-watch", daemon=True).start()


def serve(config: WorkerConfig, conn: Connection) -> None:
    """Build the scene, then render chunks from ``conn`` until ``None`` or end-of-file."""
    try:
        from two4two._blender.scene import BlenderScene
    except ImportError as error:
        conn.send(("import_error", config.worker_id, f"{type(error).__name__}: {error}"))
        return
    try:
        scene = BlenderScene(
            config.scratch_dir,
            threads=config.threads,
            device=config.device,
            view_transform=config.view_transform,
            worker_id=config.worker_id,
            cycles_settings=config.cycles_settings,
        )
    except Exception as error:
        conn.send(("error", config.worker_id, f"building the Blender scene failed: {error}",
                   traceback.format_exc()))
        return
    conn.send(("ready", config.worker_id, scene.device))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent closed its end or died
            return
        if message is None:
            return
        call_id, chunk = message
        for task in chunk:
            try:
                image, mask, timings = _render_task(scene, task, config.token)
            except Exception as error:
                conn.send(("error", config.worker_id,
                           f"rendering scene #{task.index} failed: {type(error).__name__}: "
                           f"{error}", traceback.format_exc()))
                continue
            conn.send(("result", call_id, task.index, image, mask, timings))


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process: ``python -m two4two._blender.worker FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a crash in Blender leaves the Python stack in the stderr log
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m two4two._blender.worker FD  (started by two4two.blender; "
              "FD is the inherited socket to the parent)", file=sys.stderr)
        return 2
    conn = Connection(int(args[0]))
    try:
        config: WorkerConfig = conn.recv()
    except (EOFError, OSError):
        return 1
    _exit_when_orphaned(config.parent_pid)
    _use_parent_path(config.sys_path)
    try:
        serve(config, conn)
    except (BrokenPipeError, ConnectionResetError):  # the parent went away mid-send
        return 1
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    # Run the imported module's main (not this ``__main__`` copy), so the classes
    # the parent pickles (two4two._blender.worker.Task, ...) are the ones used.
    from two4two._blender import worker as _worker

    sys.exit(_worker.main())
