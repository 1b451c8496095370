"""The parent side of rendering: a reusable pool of Blender workers (:class:`Renderer`).

:class:`Renderer` owns the pool's life (start, close, terminate) and checks a
call's arguments; :class:`_RenderCall` carries one call through the pool: at most
a window of tasks in flight, results handed back in input order, and, when the
caller stops early, the images still in flight drained (or the workers killed,
with ``drain_on_close=False``). Public through
:mod:`two4two.blender` (``docs/two4two_render.md``); no ``bpy`` here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from two4two._blender.pool import PoolSettings, WorkerFailure, WorkerPool
from two4two._blender.spec import DEFAULT_SAMPLES, DEFAULT_VIEW_TRANSFORM, DEVICES, RenderSpec
from two4two._blender.worker import Task
from two4two.errors import RenderError, WorkerCrashError
from two4two.scene_parameters import SceneValueError, check_scene_id

__all__ = ["INSTALL_HINT", "RenderResult", "Renderer", "available_cores", "check_bpy_available",
           "render_error"]

INSTALL_HINT = 'install Blender as a Python module with: pip install "bpy==4.5.*" (Python 3.11)'
"""How to get ``bpy``; the end of every message about a missing or broken ``bpy``."""

RenderResult = tuple[np.ndarray, np.ndarray, Any]
"""``(image uint8 [H, W, 3], mask uint8 [H, W], scene)``."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_bpy_available() -> None:
    """Raise :class:`RenderError` if ``bpy`` is not installed (without importing it)."""
    try:
        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise RenderError(f"Blender's Python module 'bpy' is not installed; {INSTALL_HINT}")


def _spec_of(scene: Any) -> RenderSpec:
    """What a worker needs of ``scene``; a :class:`SceneValueError` naming the scene if
    it cannot be drawn."""
    try:
        return RenderSpec.from_params(scene)
    except (AttributeError, TypeError, ValueError) as error:
        raise SceneValueError(f"scene {getattr(scene, 'id', scene)!r} cannot be rendered: "
                              f"{error}") from None


def render_error(failure: WorkerFailure) -> RenderError:
    """The public error for a worker's failure: a :class:`WorkerCrashError` for a crash,
    else a :class:`RenderError` (with the install hint when ``bpy`` did not import)."""
    if failure.kind == "import":
        return RenderError(f"{failure} (cannot import bpy); {INSTALL_HINT}",
                           details=failure.details)
    error = WorkerCrashError if failure.kind == "crashed" else RenderError
    return error(str(failure), details=failure.details)


def _make_task(index: int, spec: RenderSpec, scene: Any, samples: int,
               output_dir: str | os.PathLike | None, save_blend: bool) -> Task:
    if output_dir is None:
        return Task(index=index, spec=spec, samples=samples)
    folder = Path(output_dir)
    scene_id = check_scene_id(getattr(scene, "id", None), "scene id")  # a file name
    return Task(
        index=index, spec=spec, samples=samples,
        image_path=str(folder / f"{scene_id}.png"),
        mask_path=str(folder / f"{scene_id}_mask.png"),
        blend_path=str(folder / f"{scene_id}.blend") if save_blend else None,
    )


class _RenderCall:
    """One :meth:`Renderer.render` call going through the pool.

    Chunks of ``chunk_size`` tasks are handed to the pool while fewer than
    ``window`` tasks are in flight; results of other (abandoned) calls are
    skipped. ``timings[i]`` is filled when task ``i``'s result arrives.
    """

    def __init__(self, pool: WorkerPool, call_id: int, tasks: list[Task], chunk_size: int,
                 window: int) -> None:
        self.pool = pool
        self.call_id = call_id
        self.n_tasks = len(tasks)
        self.window = window
        self.in_flight = 0
        self.timings: list[dict[str, float]] = [{} for _ in tasks]
        self._chunks = iter([tasks[i:i + chunk_size] for i in range(0, len(tasks), chunk_size)])

    def _fill(self) -> None:
        """Hand the pool chunks until ``window`` tasks are in flight; a worker found dead
        when it is handed work is :func:`render_error`'s error too."""
        while self.in_flight < self.window:
            chunk = next(self._chunks, None)
            if chunk is None:
                return
            try:
                self.pool.submit(self.call_id, chunk)
            except WorkerFailure as failure:
                raise render_error(failure) from None
            self.in_flight += len(chunk)

    def _receive(self) -> tuple:
        """The pool's next result message; a worker failure becomes :func:`render_error`'s."""
        try:
            return self.pool.receive()
        except WorkerFailure as failure:
            raise render_error(failure) from None

    def results(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(index, image, mask)`` of every task, in input order."""
        done: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        next_index = 0
        while next_index < self.n_tasks:
            self._fill()
            message = self._receive()
            if message[1] != self.call_id:
                continue  # stale result of an abandoned call
            _, _, index, image, mask, timings = message
            self.timings[index] = timings
            self.in_flight -= 1
            done[index] = (image, mask)
            while next_index in done:
                image, mask = done.pop(next_index)
                yield next_index, image, mask
                next_index += 1

    def drain(self) -> None:
        """Wait for the results still in flight (after the caller stopped early)."""
        while self.in_flight > 0:
            if self._receive()[1] == self.call_id:
                self.in_flight -= 1


class Renderer:
    """A pool of Blender worker processes, reusable across :meth:`render` calls.

    Workers start on the first :meth:`render` call and stay until :meth:`close`
    (or the end of a ``with`` block).

    Args:
        n_processes: worker processes; 0 = one per available core.
        samples: default Cycles samples per pixel (128 = the released datasets;
            lower for drafts, e.g. 32).
        device: one of :data:`~two4two._blender.spec.DEVICES`; on a GPU, worker ``i``
            takes the ``i % n``-th of the ``n`` GPUs it sees (``CUDA_VISIBLE_DEVICES``).
        view_transform: Blender view transform; ``'Filmic'`` (Blender 2.83's
            default) avoids blown-out images (see :mod:`two4two._blender.scene`).
        print_output: show Blender's console output instead of logging it to a
            temporary file.
        print_cmd: print a line describing the workers when they start.
        cycles_settings: extra ``scene.cycles`` attributes for experiments
            (e.g. ``{"use_adaptive_sampling": True}``); they change the look.
        threads: Cycles threads per worker (default: the available cores shared out).
        drain_on_close: when a caller stops iterating early, wait for the images
            still in flight so the workers can be reused (``True``), or kill the
            workers at once (``False``, for a one-shot renderer).

    Attributes:
        last_timings: per image of the latest :meth:`render` call, in input
            order, the worker's seconds for ``update`` (scene), ``render``
            (Cycles, wall clock), ``render_cpu`` (Cycles, CPU seconds of all its
            threads), ``image`` and ``mask`` (read-back) and ``png`` (writing).
    """

    def __init__(
        self,
        n_processes: int = 0,
        *,
        samples: int = DEFAULT_SAMPLES,
        device: str = "auto",
        view_transform: str = DEFAULT_VIEW_TRANSFORM,
        print_output: bool = False,
        print_cmd: bool = False,
        cycles_settings: Mapping[str, Any] | None = None,
        threads: int | None = None,
        drain_on_close: bool = True,
    ) -> None:
        if n_processes < 0:
            raise ValueError(f"n_processes must be >= 0, got {n_processes}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        cores = available_cores()
        self.n_processes = n_processes or cores
        self.threads_per_process = threads or max(1, cores // self.n_processes)
        self.samples = samples
        self.device = device
        self.view_transform = view_transform
        self.print_output = print_output
        self.print_cmd = print_cmd
        self.cycles_settings = dict(cycles_settings or {})
        self.last_timings: list[dict[str, float]] = []
        self._pool = WorkerPool(PoolSettings(
            n_processes=self.n_processes, threads=self.threads_per_process, device=device,
            view_transform=view_transform, print_output=print_output,
            cycles_settings=self.cycles_settings))
        self._call_ids = itertools.count()
        self._busy = False
        self._closed = False
        self.drain_on_close = drain_on_close

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()
            self._closed = True

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.terminate()

    @property
    def started(self) -> bool:
        """Whether the worker processes are running."""
        return self._pool.started

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers."""
        return self._pool.pids

    @property
    def devices(self) -> dict[int, str]:
        """Cycles device of each worker that has finished starting (``'CPU'``, ``'OPTIX'``...)."""
        return dict(self._pool.devices)

    def start(self) -> None:
        """Start the workers (done automatically by the first :meth:`render`)."""
        if self._closed:
            raise RenderError("this Renderer was closed; create a new one")
        if self._pool.started:
            return
        check_bpy_available()
        if self.print_cmd:
            print(f"two4two: starting {self.n_processes} Blender worker(s) (bpy, Cycles, "
                  f"device {self.device}, {self.threads_per_process} thread(s) each, "
                  f"{self.samples} samples, view transform {self.view_transform})", flush=True)
        try:
            self._pool.start()
        except WorkerFailure as failure:
            raise render_error(failure) from None

    def close(self) -> None:
        """Stop the workers after their current image and clean up; the renderer is done."""
        self._pool.close()
        self._closed = True

    def terminate(self) -> None:
        """Kill the workers now and remove their temporary files.

        A later :meth:`render` starts new workers (after an error, say).
        """
        self._pool.terminate()

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        params: Iterable[Any],
        *,
        chunk_size: int = 1,
        output_dir: str | os.PathLike | None = None,
        samples: int | None = None,
        save_blender_file: bool = False,
    ) -> Iterator[RenderResult]:
        """Render scenes; yields ``(image, mask, params)`` in input order.

        Args:
            params: ``SceneParameters`` (anything with their fields).
            chunk_size: scenes handed to a worker at a time.
            output_dir: if given, ``<id>.png`` and ``<id>_mask.png`` are written
                there (atomically) before each tuple is yielded.
            samples: Cycles samples per pixel for this call (default: the
                renderer's).
            save_blender_file: also write ``<id>.blend`` into ``output_dir``.

        Returns:
            an iterator; ``image`` is uint8 ``[H, W, 3]``, ``mask`` uint8 ``[H, W]``.

        Scenes are drawn as they are, also with values outside ``check_values()``'s
        ranges (as upstream renders them); the dataset writer refuses those itself.

        Raises:
            ValueError: a scene cannot be drawn at all (a value that is not a finite
                number, a bad resolution), or bad arguments.
            RenderError: ``bpy`` missing, or a worker failed or died.
        """
        scenes = list(params)
        specs = [_spec_of(scene) for scene in scenes]
        samples = self.samples if samples is None else int(samples)
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if save_blender_file and output_dir is None:
            raise ValueError("save_blender_file=True needs an output_dir")
        if self._closed:
            raise RenderError("this Renderer was closed; create a new one")
        check_bpy_available()
        tasks = [_make_task(i, spec, scenes[i], samples, output_dir, save_blender_file)
                 for i, spec in enumerate(specs)]
        return self._run(scenes, tasks, chunk_size)

    def _run(self, scenes: list[Any], tasks: list[Task], chunk_size: int
             ) -> Iterator[RenderResult]:
        if self._busy:
            raise RuntimeError("Renderer.render() is already running; finish that iteration first")
        self._busy = True
        try:
            if not tasks:
                return
            for task in tasks:
                if task.image_path is not None:
                    folder = Path(task.image_path).parent
                    folder.mkdir(parents=True, exist_ok=True)
                    self._pool.watch_output_dir(folder)
            self.start()
            call = _RenderCall(self._pool, next(self._call_ids), tasks, chunk_size,
                               window=2 * self.n_processes * chunk_size)
            self.last_timings = call.timings
            for index, image, mask in call.results():
                try:
                    yield image, mask, scenes[index]
                except GeneratorExit:  # the caller stopped iterating
                    if self.started and self.drain_on_close:
                        self._drain(call)
                    elif self.started:
                        self.terminate()
                    raise
        except GeneratorExit:
            raise
        except BaseException:
            self.terminate()
            raise
        finally:
            self._busy = False

    def _drain(self, call: _RenderCall) -> None:
        """Wait for the images still being rendered for an abandoned call."""
        try:
            call.drain()
        except BaseException:
            self.terminate()
            raise
