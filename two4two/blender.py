"""Render Two4Two scenes with Blender's Cycles, in worker processes (``bpy``, Blender 4.5).

Public API::

    for image, mask, params in two4two.render(scenes, n_processes=0, output_dir="out"):
        ...   # image uint8 [H, W, 3] (RGB), mask uint8 [H, W] (0 background, 1..8 blocks)

    image, mask = two4two.blender.render_single(scene, samples=128)

    with Renderer(n_processes=2, samples=128) as renderer:   # one pool, many calls
        for image, mask, params in renderer.render(train_scenes, output_dir="train"):
            ...

    SEGMENTATION_INT_TO_NAME[mask[y, x]]   # 'background', 'spine_left', ...
    ensure_blender_available()             # upstream's check: does bpy import?

Each worker process imports ``bpy`` once, builds the scene once and only
updates it per image (:mod:`two4two._blender.scene`); this module never imports
``bpy`` itself. Workers are fresh interpreters running
``python -m two4two._blender.worker`` (:mod:`two4two._blender.pool`), not
``multiprocessing`` children, so they never import the caller's main module:
rendering works the same from a script (with or without an
``if __name__ == "__main__":`` guard), ``python -c``, a script on stdin and a
notebook (``docs/two4two_render.md``). Each worker gets ``cores // workers``
Cycles threads (at least one), so the machine is not oversubscribed. Results
come back in input order. With ``output_dir``, workers write ``<id>.png`` (RGB)
and ``<id>_mask.png`` (labels) atomically (temporary file in the same folder,
then rename) before the tuple is yielded; :func:`render` also appends each scene's
``state_dict()`` to ``<output_dir>/parameters.jsonl``. Ctrl-C or an error stops
all workers and removes their temporary files. Blender's own console output is
kept in a log file per worker unless ``print_output``.

The GPU (OptiX, CUDA, HIP or oneAPI, whichever Cycles finds) is used when
present (``device='auto'``); otherwise, or with ``device='cpu'``, the CPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from two4two._blender.geometry import BLOCK_NAMES
from two4two._blender.pool import PoolSettings, WorkerFailure, WorkerPool
from two4two._blender.spec import DEFAULT_VIEW_TRANSFORM, DEVICES, RenderSpec
from two4two._blender.worker import Task
from two4two.errors import Two4TwoError
from two4two.files import append_line
from two4two.scene_parameters import SceneValueError, check_scene_id

__all__ = ["SEGMENTATION_INT_TO_NAME", "SEGMENTATION_NAME_TO_INT", "RenderError", "Renderer",
           "WorkerCrashError", "available_cores", "ensure_blender_available", "render",
           "render_single"]

DEFAULT_SAMPLES = 128
"""Cycles samples per pixel of the released datasets."""

SEGMENTATION_INT_TO_NAME: dict[int, str] = {
    0: "background", **{k + 1: name for k, name in enumerate(BLOCK_NAMES)}}
"""Mask value -> name: 0 the background, 1..8 the blocks (each block object's pass index
is its position in ``BLOCK_NAMES`` plus one)."""

SEGMENTATION_NAME_TO_INT: dict[str, int] = {
    name: value for value, name in SEGMENTATION_INT_TO_NAME.items()}
"""Name -> mask value, the inverse of :data:`SEGMENTATION_INT_TO_NAME`."""

_INSTALL_HINT = 'install Blender as a Python module with: pip install "bpy==4.5.*" (Python 3.11)'

RenderResult = tuple[np.ndarray, np.ndarray, Any]


class RenderError(Two4TwoError, RuntimeError):
    """Rendering failed: ``bpy`` is missing, or a Blender worker failed or died.

    ``details`` holds the worker's traceback or log tail, when there is one.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class WorkerCrashError(RenderError):
    """A Blender worker crashed by itself (SIGSEGV, SIGBUS, ...; see
    :data:`two4two._blender.pool.CRASH_SIGNALS`), not killed from outside."""


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
        raise RenderError(f"Blender's Python module 'bpy' is not installed; {_INSTALL_HINT}")


def _spec_of(scene: Any) -> RenderSpec:
    """What a worker needs of ``scene``; a :class:`SceneValueError` naming the scene if
    it cannot be drawn."""
    try:
        return RenderSpec.from_params(scene)
    except (AttributeError, TypeError, ValueError) as error:
        raise SceneValueError(f"scene {getattr(scene, 'id', scene)!r} cannot be rendered: "
                              f"{error}") from None


def ensure_blender_available(blender_dir: str | os.PathLike | None = None,
                             download_blender: bool = False) -> None:
    """Check that Blender can be used: that ``bpy`` imports in a fresh interpreter.

    Upstream's name and keywords. Upstream downloads a Blender binary into
    ``blender_dir``; here Blender is the ``bpy`` wheel, so there is nothing to
    download and both arguments are ignored.

    Raises:
        RenderError: ``bpy`` is not installed or fails to import (the message
            says how to install it, and holds the import error's last line).
    """
    del blender_dir, download_blender  # nothing to download with the bpy wheel
    check_bpy_available()
    try:
        result = subprocess.run([sys.executable, "-c", "import bpy"], capture_output=True,
                                text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"importing bpy took over 300 s; {_INSTALL_HINT}") from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise RenderError(f"bpy is installed but does not import ({lines[-1]}); "
                          f"{_INSTALL_HINT}", details=result.stderr)


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
        self._drain_on_close = True  # False: an abandoned iteration kills the workers

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
            error = WorkerCrashError if failure.kind == "crashed" else RenderError
            raise error(str(failure), details=failure.details) from None

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
        tasks = [self._make_task(i, spec, scenes[i], samples, output_dir, save_blender_file)
                 for i, spec in enumerate(specs)]
        return self._run(scenes, tasks, chunk_size)

    def _make_task(self, index: int, spec: RenderSpec, scene: Any, samples: int,
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

    def _run(self, scenes: list[Any], tasks: list[Task], chunk_size: int
             ) -> Iterator[RenderResult]:
        if self._busy:
            raise RuntimeError("Renderer.render() is already running; finish that iteration first")
        self._busy = True
        in_flight = 0
        try:
            if not tasks:
                return
            for task in tasks:
                if task.image_path is not None:
                    folder = Path(task.image_path).parent
                    folder.mkdir(parents=True, exist_ok=True)
                    self._pool.watch_output_dir(folder)
            self.start()
            call_id = next(self._call_ids)
            chunks = iter([tasks[i:i + chunk_size] for i in range(0, len(tasks), chunk_size)])
            window = 2 * self.n_processes * chunk_size
            done: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            self.last_timings = [{} for _ in tasks]
            next_index = 0
            while next_index < len(tasks):
                while in_flight < window:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    self._pool.submit(call_id, chunk)
                    in_flight += len(chunk)
                message = self._receive()
                if message[1] != call_id:
                    continue  # stale result of an abandoned call
                _, _, index, image, mask, timings = message
                self.last_timings[index] = timings
                in_flight -= 1
                done[index] = (image, mask)
                while next_index in done:
                    image, mask = done.pop(next_index)
                    try:
                        yield image, mask, scenes[next_index]
                    except GeneratorExit:  # the caller stopped iterating
                        if self.started and self._drain_on_close:
                            self._drain(call_id, in_flight)
                        elif self.started:
                            self.terminate()
                        raise
                    next_index += 1
        except GeneratorExit:
            raise
        except BaseException:
            self.terminate()
            raise
        finally:
            self._busy = False

    def _drain(self, call_id: int, in_flight: int) -> None:
        """Wait for the images still being rendered for an abandoned call."""
        try:
            while in_flight > 0:
                message = self._receive()
                if message[1] == call_id:
                    in_flight -= 1
        except BaseException:
            self.terminate()
            raise

    def _receive(self) -> tuple:
        """Next result message from the pool; worker failures become :class:`RenderError`."""
        try:
            return self._pool.receive()
        except WorkerFailure as failure:
            if failure.kind == "import":
                raise RenderError(f"{failure} (cannot import bpy); {_INSTALL_HINT}") from None
            error = WorkerCrashError if failure.kind == "crashed" else RenderError
            raise error(str(failure), details=failure.details) from None


PARAMETERS_FILE = "parameters.jsonl"
"""The file in ``output_dir`` that :func:`render` appends one scene ``state_dict()`` per line to."""


def render(
    params: Iterable[Any],
    n_processes: int = 0,
    chunk_size: int = 1,
    output_dir: str | os.PathLike | None = None,
    blender_dir: str | os.PathLike | None = None,
    download_blender: bool = False,
    print_output: bool = False,
    print_cmd: bool = False,
    save_blender_file: bool = False,
    *,
    samples: int = DEFAULT_SAMPLES,
    device: str = "auto",
    write_parameters: bool = True,
) -> Iterator[RenderResult]:
    """Render scenes with fresh worker processes; yields ``(image, mask, params)`` in order.

    The positional order is the original two4two's, so its calls work
    unchanged (``docs/two4two_render.md``; only the first four are confirmed).

    Args:
        params: the scenes (``SceneParameters``).
        n_processes: worker processes; 0 = one per available core, at most
            one per scene.
        chunk_size: scenes handed to a worker at a time.
        output_dir: if given, write ``<id>.png`` and ``<id>_mask.png`` there,
            and append each scene's ``state_dict()`` as one JSON line to
            ``<output_dir>/parameters.jsonl`` (in render order, once its PNGs
            are in place, before it is yielded), as the original does.
        blender_dir: accepted for compatibility; a no-op.
        download_blender: accepted for compatibility; a no-op (``bpy`` needs
            no separate Blender).
        print_output: show Blender's console output.
        print_cmd: print a line describing the workers when they start.
        save_blender_file: also write ``<id>.blend`` (needs ``output_dir``).
        samples: Cycles samples per pixel (128 = the released datasets; fewer
            for drafts).
        device: as :class:`Renderer`'s (``'auto'``, ``'cpu'``, ``'cuda'``, ...).
        write_parameters: ``False`` skips ``parameters.jsonl`` (for callers
            that keep their own, like the dataset writer).

    Returns:
        an iterator of ``(image uint8 [H, W, 3], mask uint8 [H, W], params)``.
        Arguments and ``bpy``'s presence are checked before it is returned;
        workers start at the first ``next()``.

    Raises:
        RenderError: ``bpy`` is missing, or a worker failed or died.
        ValueError: a scene cannot be drawn at all (see :meth:`Renderer.render`), or
            bad arguments.
    """
    del download_blender, blender_dir  # compatibility only
    scenes = list(params)
    check_bpy_available()
    log_path = None
    if output_dir is not None and write_parameters:
        for scene in scenes:
            if not callable(getattr(scene, "state_dict", None)):
                raise ValueError(f"render(output_dir=...) writes {PARAMETERS_FILE} and needs "
                                 f"scenes with state_dict(); got {type(scene).__name__} "
                                 "(pass SceneParameters, or write_parameters=False)")
        log_path = Path(output_dir) / PARAMETERS_FILE
    workers = min(n_processes or available_cores(), max(1, len(scenes)))
    renderer = Renderer(workers, samples=samples, device=device,
                        print_output=print_output, print_cmd=print_cmd)
    renderer._drain_on_close = False
    iterator = renderer.render(scenes, chunk_size=chunk_size, output_dir=output_dir,
                               save_blender_file=save_blender_file)
    return _closing(renderer, iterator, log_path)


def _closing(renderer: Renderer, iterator: Iterator[RenderResult],
             parameters_path: Path | None) -> Iterator[RenderResult]:
    """Iterate (logging scenes to ``parameters_path``), then close the renderer.

    The renderer is killed if the iteration is abandoned or fails.
    """
    try:
        for image, mask, scene in iterator:
            if parameters_path is not None:
                append_line(parameters_path, json.dumps(scene.state_dict(), allow_nan=False))
            yield image, mask, scene
    except BaseException:
        renderer.terminate()
        raise
    renderer.close()


def render_single(
    param: Any, samples: int = DEFAULT_SAMPLES, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene in a fresh worker; returns ``(image uint8 [H, W, 3], mask uint8 [H, W])``.

    ``param`` is the upstream keyword name. ``kwargs`` are passed to
    :func:`render` (e.g. ``device``, ``output_dir``). Use a :class:`Renderer`
    to render many scenes without restarting Blender.
    """
    kwargs.setdefault("n_processes", 1)
    for image, mask, _ in render([param], samples=samples, **kwargs):
        return image, mask
    raise RenderError("the worker returned no image")
