"""The render worker: one process, one Blender (``bpy``), one scene built once.

The parent (:class:`two4two.blender.Renderer`) starts :func:`worker_main` in
``spawn``-ed processes and talks to them through two queues.

Parent -> worker (task queue): ``(call_id, [Task, ...])`` per chunk, ``None`` to stop.
Worker -> parent (result queue), tuples tagged by their first entry:

* ``("ready", worker_id, device)`` once the scene is built;
* ``("result", call_id, index, image, mask, timings)`` per image, in the
  order the worker finished them; ``image`` uint8 ``[H, W, 3]``, ``mask`` uint8
  ``[H, W]`` (already flipped if ``fliplr``), ``timings`` a dict of seconds;
* ``("import_error", worker_id, message)`` if ``bpy`` cannot be imported;
* ``("error", worker_id, message, traceback)`` if anything else fails.

Workers ignore SIGINT (Ctrl-C reaches the parent, which stops them), exit when
the parent process disappears, and write output files atomically: a temporary
file ``.<name>.<token>.tmp`` in the target folder, then ``os.replace``. The
parent removes such temporary files (by its ``token``) after killing workers.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from two4two._blender.spec import RenderSpec

__all__ = ["Task", "WorkerConfig", "temp_path", "worker_main", "write_png_atomic"]

_PARENT_POLL_S = 1.0


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of one worker process (picklable)."""

    worker_id: int
    threads: int
    device: str
    view_transform: str
    scratch_dir: str
    log_path: str | None  # stderr goes here, stdout to /dev/null; None: leave both alone
    token: str  # marks this renderer's temporary files
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


def _redirect_output(log_path: str) -> None:
    """Silence Blender's console chatter: stdout to /dev/null, stderr to a log file.

    Blender prints several progress lines per render to stdout (hundreds of
    bytes per image); warnings and crash reports go to stderr, which is kept.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)


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


def worker_main(config: WorkerConfig, tasks: Any, results: Any) -> None:
    """Entry point of a worker process (see the module docstring for the protocol)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config.log_path is not None:
        _redirect_output(config.log_path)
    try:
        from two4two._blender.scene import BlenderScene
    except ImportError as error:
        results.put(("import_error", config.worker_id, f"{type(error).__name__}: {error}"))
        return
    try:
        scene = BlenderScene(
            config.scratch_dir,
            threads=config.threads,
            device=config.device,
            view_transform=config.view_transform,
            cycles_settings=config.cycles_settings,
        )
    except Exception as error:
        results.put(("error", config.worker_id, f"building the Blender scene failed: {error}",
                     traceback.format_exc()))
        return
    results.put(("ready", config.worker_id, scene.device))
    parent = multiprocessing.parent_process()
    while True:
        try:
            message = tasks.get(timeout=_PARENT_POLL_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if message is None:
            return
        call_id, chunk = message
        for task in chunk:
            try:
                image, mask, timings = _render_task(scene, task, config.token)
            except Exception as error:
                results.put(("error", config.worker_id,
                             f"rendering scene #{task.index} failed: {type(error).__name__}: "
                             f"{error}", traceback.format_exc()))
                continue
            results.put(("result", call_id, task.index, image, mask, timings))
