"""Tests of the Blender renderer (two4two.blender); the geometry's own tests are in
``test_render_look.py``.

Renders are small (64x64) with few Cycles samples; one pool of two worker
processes is shared by the module (Blender starts once). Rendering from other
entry points (stdin, ``python -c``, unguarded scripts, notebooks) and crash
clean-up are in ``test_entry_points.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib.colors
import numpy as np
import pytest
from PIL import Image

from two4two import utils
from two4two.blender import Renderer, RenderError, WorkerCrashError, render
from two4two.scene_parameters import SceneParameters

RES = (64, 64)
SAMPLES = 8


def scene(**fields: object) -> SceneParameters:
    """A default scene at the test resolution with some fields replaced."""
    return dataclasses.replace(SceneParameters(resolution=RES), **fields)


@pytest.fixture(scope="module")
def renderer():
    with Renderer(n_processes=2, samples=SAMPLES) as pool:
        yield pool


def render_many(renderer: Renderer, scenes: list[SceneParameters], **kwargs):
    return list(renderer.render(scenes, **kwargs))


def mean_column(mask: np.ndarray, labels: tuple[int, ...]) -> float:
    return float(np.nonzero(np.isin(mask, labels))[1].mean())


# --------------------------------------------------------------------------- rendering


def test_default_scene_has_all_mask_labels_and_shapes(renderer):
    params = scene(resolution=(48, 64))  # (height, width)
    ((image, mask, returned),) = render_many(renderer, [params])
    assert returned is params
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    assert mask.dtype == np.uint8 and mask.shape == (48, 64)
    assert set(np.unique(mask).tolist()) == set(range(9))


def _circular_hue(rgb: np.ndarray) -> float:
    hue = matplotlib.colors.rgb_to_hsv(rgb)[..., 0]
    return float(np.angle(np.exp(2j * np.pi * hue).mean()) / (2 * np.pi) % 1.0)


def _hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 1.0 - abs(a - b))


def test_block_pixels_have_the_object_colour_hue(renderer):
    grey = (0.5, 0.5, 0.5, 1.0)
    values = (0.0, 1.0)  # coolwarm's blue and red ends
    # An asymmetric pose, so a mask misaligned with the image would be caught.
    scenes = [scene(obj_color=v, obj_color_rgba=utils.color_from_cmap("coolwarm", v),
                    bg_color_rgba=grey, obj_rotation_yaw=0.5, bending=0.3) for v in values]
    targets = [_circular_hue(np.array(p.obj_color_rgba[:3])) for p in scenes]
    for k, (image, mask, _) in enumerate(render_many(renderer, scenes)):
        hue = _circular_hue(image[mask > 0] / 255.0)
        # Filmic skews hues a little; the other colour is far away.
        assert _hue_distance(hue, targets[k]) < 0.1
        assert _hue_distance(hue, targets[k]) < _hue_distance(hue, targets[1 - k]) - 0.2
        saturation = matplotlib.colors.rgb_to_hsv(image / 255.0)[..., 1]
        coloured = saturation > 0.05  # the grey background has none
        assert coloured[mask > 0].mean() > 0.9 and coloured[mask == 0].mean() < 0.02


def test_fliplr_mirrors_image_and_mask_exactly(renderer):
    base = scene(obj_rotation_yaw=0.6, bending=0.2, arm_position=0.7)
    flipped = dataclasses.replace(base, fliplr=True)
    (image, mask, _), (image_f, mask_f, _) = render_many(renderer, [base, flipped])
    np.testing.assert_array_equal(np.fliplr(image), image_f)  # fixed Cycles seed
    np.testing.assert_array_equal(np.fliplr(mask), mask_f)
    assert not np.array_equal(mask, mask_f)  # the pose is not symmetric


def _fill_ratio(mask: np.ndarray, label: int) -> float:
    rows, cols = np.nonzero(mask == label)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    return len(rows) / box


def test_spherical_changes_the_silhouette(renderer):
    res = (128, 128)  # rounding needs a few pixels per block
    (_, cube, _), (_, blob, _) = render_many(
        renderer, [scene(spherical=0.0, resolution=res), scene(spherical=1.0, resolution=res)],
        samples=1)
    assert set(np.unique(cube).tolist()) == set(np.unique(blob).tolist()) == set(range(9))
    assert np.mean((cube > 0) != (blob > 0)) > 0.01
    for label in range(1, 9):  # a rounded blob fills less of its bounding box than a cube
        assert _fill_ratio(blob, label) < _fill_ratio(cube, label) - 0.05


def test_peaky_and_stretchy_differ_at_the_right_arms(renderer):
    (_, peaky, _), (_, stretchy, _) = render_many(
        renderer, [scene(arm_position=0.0), scene(arm_position=1.0)], samples=1)
    spine_end = 6
    for mask, side in ((peaky, -1), (stretchy, +1)):
        arms = mean_column(mask, (7, 8))
        assert side * (arms - mean_column(mask, (spine_end,))) > 2  # inward vs outward
    right_shift = mean_column(stretchy, (7, 8)) - mean_column(peaky, (7, 8))
    left_shift = mean_column(stretchy, (1, 2)) - mean_column(peaky, (1, 2))
    assert right_shift > 5 and abs(left_shift) < right_shift / 2


def test_output_dir_pngs_equal_yielded_arrays(renderer, tmp_path):
    scenes = [scene(arm_position=0.2), scene(arm_position=0.9, fliplr=True)]
    results = render_many(renderer, scenes, output_dir=tmp_path, save_blender_file=True)
    for image, mask, params in results:
        with Image.open(tmp_path / params.filename) as png:
            assert png.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(png), image)
        with Image.open(tmp_path / params.mask_filename) as png:
            assert png.mode == "L"
            np.testing.assert_array_equal(np.asarray(png), mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for p in scenes for n in (p.filename, p.mask_filename, f"{p.id}.blend"))


def test_results_in_input_order_with_several_processes(renderer):
    # Each scene gets its own resolution, so every image shows which scene it is.
    scenes = [scene(resolution=(24 + 2 * i, 40 - 2 * i)) for i in range(7)]
    results = list(renderer.render(scenes, chunk_size=2, samples=1))
    assert [r[2] for r in results] == scenes
    assert all(r[2] is p for r, p in zip(results, scenes, strict=True))
    assert [r[0].shape[:2] for r in results] == [p.resolution for p in scenes]


def test_render_positional_appends_parameters_jsonl_in_render_order(tmp_path):
    scenes = [scene(arm_position=0.1), scene(arm_position=0.9, fliplr=True), scene(bending=0.2)]
    # upstream's positional order: params, n_processes, chunk_size, output_dir
    first = list(render(scenes[:2], 2, 1, tmp_path, samples=1))
    second = list(render(scenes[2:], 1, 1, str(tmp_path), samples=1))  # appends
    assert [r[2] for r in first + second] == scenes
    lines = (tmp_path / "parameters.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        json.loads(json.dumps(p.state_dict())) for p in scenes]
    for p in scenes:
        assert (tmp_path / p.filename).is_file() and (tmp_path / p.mask_filename).is_file()
    for first_result, p in zip(first, scenes, strict=False):  # the PNGs are the yielded arrays
        with Image.open(tmp_path / p.filename) as png:
            np.testing.assert_array_equal(np.asarray(png), first_result[0])


def test_render_error_when_bpy_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "bpy", None)  # makes `import bpy` fail
    with pytest.raises(RenderError, match=r'pip install "bpy==4\.5\.\*"'):
        render([scene()])
    with pytest.raises(RenderError, match="bpy"):
        Renderer(1).start()


def test_render_error_when_workers_cannot_import_bpy(tmp_path, monkeypatch):
    # A broken `bpy` first on the path: the parent only looks for it, workers (which
    # inherit the parent's sys.path) fail to import it.
    (tmp_path / "bpy.py").write_text("raise ImportError('simulated: no bpy here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RenderError, match=r"simulated: no bpy here.*pip install"):
        list(render([scene()], n_processes=1, samples=1))


def test_importing_the_module_does_not_import_bpy():
    code = "import sys, two4two, two4two.blender; print('bpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dead_worker_raises_render_error(tmp_path):
    with Renderer(n_processes=1, samples=1) as pool:
        render_many(pool, [scene()])
        os.kill(pool.worker_pids[0], signal.SIGKILL)
        with pytest.raises(RenderError, match="died") as failure:
            render_many(pool, [scene()], output_dir=tmp_path)
        # it had started: the message says it was killed, not how to write a script
        assert "signal 9" in str(failure.value) and "__main__" not in str(failure.value)
        assert not pool.started and not list(tmp_path.iterdir())
        assert not isinstance(failure.value, WorkerCrashError)  # killed: not retried


def test_a_worker_crashing_by_itself_is_a_worker_crash_error(tmp_path):
    with Renderer(n_processes=1, samples=1) as pool:
        render_many(pool, [scene()])
        os.kill(pool.worker_pids[0], signal.SIGSEGV)
        with pytest.raises(WorkerCrashError, match=r"signal 11 \(SIGSEGV\)") as failure:
            render_many(pool, [scene()], output_dir=tmp_path)
        # faulthandler wrote the worker's Python stack into its stderr log
        assert "a crash inside the worker" in str(failure.value)
        assert 'File "' in failure.value.details
        assert render_many(pool, [scene()])  # the next render starts fresh workers
        ((image, _, _),) = render_many(pool, [scene()])  # a new worker takes over
        assert image.shape == (*RES, 3)



def _wait_until_dead(pid: int) -> None:
    """Wait until ``pid`` has exited (a zombie: its sockets are closed)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still runs 10 s after the signal")


@pytest.mark.parametrize(("sig", "error"), [(signal.SIGSEGV, WorkerCrashError),
                                             (signal.SIGKILL, RenderError)])
def test_a_worker_found_dead_when_handed_work_is_a_render_error(tmp_path, sig, error):
    """A worker that died while idle is found when the next call sends it work (not when a
    result is awaited); that is the same public error, so a crash there is retried too."""
    with Renderer(n_processes=1, samples=1) as pool:
        render_many(pool, [scene()])
        pid = pool.worker_pids[0]
        os.kill(pid, sig)
        _wait_until_dead(pid)
        with pytest.raises(error, match=rf"signal {int(sig)} \({sig.name}\)") as failure:
            render_many(pool, [scene()], output_dir=tmp_path)
        assert isinstance(failure.value, WorkerCrashError) == (sig == signal.SIGSEGV)
        assert not pool.started and not list(tmp_path.iterdir())
        ((image, _, _),) = render_many(pool, [scene()])  # fresh workers take over
        assert image.shape == (*RES, 3)


_INTERRUPT_SCRIPT = textwrap.dedent("""
    import sys
    from two4two.scene_parameters import SceneParameters
    from two4two.blender import Renderer

    if __name__ == "__main__":
        scenes = [SceneParameters(resolution=(64, 64)) for _ in range(40)]
        with Renderer(n_processes=2, samples=64) as pool:
            for i, _ in enumerate(pool.render(scenes, output_dir=sys.argv[1])):
                if i == 0:
                    print("pids", *pool.worker_pids, flush=True)
""")


def test_ctrl_c_stops_workers_and_leaves_no_partial_files(tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(_INTERRUPT_SCRIPT)
    out_dir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    while not pids:  # wait for the first image
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        pids = [int(p) for p in line.split()[1:]]
    time.sleep(0.3)  # let the workers get into the middle of images
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr.read()
    for pid in pids:  # workers are gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text().lower()
    names = sorted(p.name for p in out_dir.iterdir())
    assert names and not [n for n in names if n.startswith(".")]  # no temporary files
    for name in names:  # every file is a complete PNG
        with Image.open(out_dir / name) as png:
            png.load()
