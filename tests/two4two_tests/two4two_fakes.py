"""Test helpers of the two4two tests: a fake renderer (the render contract without
Blender) and tiny dataset configs."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from two4two.scene_parameters import SceneParameters


def fake_image(params: SceneParameters) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stand-in render: object-colour image, vertical stripes 0..8 as mask."""
    height, width = params.resolution
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = np.round(np.asarray(params.obj_color_rgba[:3]) * 255).astype(np.uint8)
    image[:, : width // 4] = np.round(np.asarray(params.bg_color_rgba[:3]) * 255)
    mask = (np.arange(width) * 9 // width).astype(np.uint8)[None, :].repeat(height, axis=0)
    return image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


class FakeRenderer:
    """Implements the render contract of ``two4two.blender.render`` without Blender.

    Records the ids it rendered and the keyword arguments it got; raises
    ``fail_with`` after ``fail_after`` images (to simulate an interruption).
    """

    def __init__(self) -> None:
        self.rendered: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.fail_after: int | None = None
        self.fail_with: type[BaseException] = KeyboardInterrupt

    def __call__(self, params: Sequence[SceneParameters], n_processes: int = 0,
                 chunk_size: int = 1, output_dir: str | os.PathLike | None = None,
                 **kwargs: Any) -> Iterator[tuple[np.ndarray, np.ndarray, SceneParameters]]:
        self.calls.append({"n": len(params), "n_processes": n_processes,
                           "chunk_size": chunk_size, "output_dir": output_dir, **kwargs})
        params = list(params)

        def generate() -> Iterator[tuple[np.ndarray, np.ndarray, SceneParameters]]:
            for p in params:
                if self.fail_after is not None and len(self.rendered) >= self.fail_after:
                    self.fail_after = None
                    raise self.fail_with("injected failure")
                image, mask = fake_image(p)
                if output_dir is not None:
                    _write_png(Path(output_dir) / p.filename, image)
                    _write_png(Path(output_dir) / p.mask_filename, mask)
                self.rendered.append(p.id)
                yield image, mask, p

        return generate()


def write_config(path: Path, output_dir: Path, *, splits: str, extra: str = "",
                 sampler: str = "dubfiv.data_generation.SamplerObjColorAndSpherical",
                 sampler_config: str = "obj_color_slope = 2.5\n") -> Path:
    """Write a dataset TOML with the given ``[[dataset.split]]`` text."""
    path.write_text(
        "[[dataset]]\n"
        f'sampler = "{sampler}"\n'
        f'output_dir = "{output_dir}"\n'
        f"{extra}"
        f"{splits}"
        "[dataset.sampler_config]\n"
        f"{sampler_config}",
        encoding="utf-8",
    )
    return path


TINY_SPLITS = """
resolution = [32, 32]
render_samples = 4
n_processes = 1
[[dataset.split]]
name = "train"
n_samples = 6
[[dataset.split]]
name = "test"
n_samples = 5
interventions = [["obj_color"], ["spherical", "bg_color"]]
"""


def wait_for_recorded(params: Path, n_lines: int, process: subprocess.Popen,
                      timeout: float = 240.0) -> None:
    """Wait until a render ``process`` has recorded ``n_lines`` scenes in ``params``
    (a ``parameters.jsonl``); fail if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if params.exists() and params.read_bytes().count(b"\n") >= n_lines:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
