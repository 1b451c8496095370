"""scripts/bench_render.py: one row per device, an unavailable GPU is a row, not a crash."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_render.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_render", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs bpy (Blender)")
def test_cpu_row_and_unavailable_cuda_row() -> None:
    # No CUDA device visible, also on a GPU machine: the cuda row must say why.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu,cuda", "--n-images", "1",
         "--samples", "2", "--resolution", "16", "--processes", "1", "--no-split"],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    cpu = [line for line in lines if re.match(r"\s*cpu\s+CPU\s+1\s", line)]
    assert len(cpu) == 1, result.stdout
    images_per_s = float(cpu[0].split()[4])
    assert images_per_s > 0
    cuda = [line for line in lines if line.split()[:1] == ["cuda"] and "unavailable" in line]
    assert cuda, result.stdout
    assert re.search(r"unavailable: .*CUDA", cuda[0]), cuda[0]
    assert "Traceback" not in result.stderr
    assert "Images against the CPU's" in result.stdout  # two devices: the comparison table


def test_image_difference_and_reason() -> None:
    bench = load_script()
    image = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    other_image, other_mask = image.copy(), mask.copy()
    other_image[0, 0, 0] = 255
    other_mask[1, 1] = 3
    mean, peak, differs = bench.image_difference([(image, mask)], [(other_image, other_mask)])
    assert peak == 255 and mean == pytest.approx(255 / 48) and differs == pytest.approx(1 / 16)
    error = RuntimeError("Blender worker 0: building the Blender scene failed: render_device="
                         "'cuda', but Cycles finds no CUDA device;\n use 'cpu'")
    assert bench.one_line(error) == ("render_device='cuda', but Cycles finds no CUDA device; "
                                     "use 'cpu'")
    assert bench.parse_devices("cpu, CUDA,cpu") == ["cpu", "cuda"]
    with pytest.raises(SystemExit):
        bench.parse_devices("cpu,vulkan")
