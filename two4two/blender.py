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
updates it per image (:mod:`two4two._blender.scene`); this module and the pool's parent side
(:mod:`two4two._blender.renderer`) never import ``bpy``. Workers are fresh interpreters running
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

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from two4two._blender.geometry import BLOCK_NAMES
from two4two._blender.renderer import (
    INSTALL_HINT,
    Renderer,
    RenderResult,
    available_cores,
    check_bpy_available,
)
from two4two._blender.spec import DEFAULT_SAMPLES
from two4two.errors import RenderError, WorkerCrashError
from two4two.files import append_line

__all__ = ["DEFAULT_SAMPLES", "SEGMENTATION_INT_TO_NAME", "SEGMENTATION_NAME_TO_INT",
           "RenderError", "RenderResult", "Renderer", "WorkerCrashError", "available_cores",
           "check_bpy_available", "ensure_blender_available", "render", "render_single"]

SEGMENTATION_INT_TO_NAME: dict[int, str] = {
    0: "background", **{k + 1: name for k, name in enumerate(BLOCK_NAMES)}}
"""Mask value -> name: 0 the background, 1..8 the blocks (each block object's pass index
is its position in ``BLOCK_NAMES`` plus one)."""

SEGMENTATION_NAME_TO_INT: dict[str, int] = {
    name: value for value, name in SEGMENTATION_INT_TO_NAME.items()}
"""Name -> mask value, the inverse of :data:`SEGMENTATION_INT_TO_NAME`."""


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
        raise RenderError(f"importing bpy took over 300 s; {INSTALL_HINT}") from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise RenderError(f"bpy is installed but does not import ({lines[-1]}); "
                          f"{INSTALL_HINT}", details=result.stderr)


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
    renderer = Renderer(workers, samples=samples, device=device, print_output=print_output,
                        print_cmd=print_cmd, drain_on_close=False)
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
