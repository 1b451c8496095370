"""``render_device``: how workers share the GPUs out, and the one-line error where
Cycles finds no GPU (this machine and CI have none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from two4two_fakes import TINY_SPLITS, FakeRenderer, write_config

from two4two import cli_tool
from two4two._blender.spec import backends_to_try, worker_devices
from two4two.blender import Renderer
from two4two.dataset import DatasetError


def test_each_worker_switches_on_one_gpu_of_its_backend() -> None:
    # Cycles lists the GPUs of a backend and the CPU; 3 workers on 2 CUDA GPUs
    types = ["CUDA", "CUDA", "CPU"]
    assert [worker_devices(types, "CUDA", w) for w in range(3)] == [
        [True, False, False], [False, True, False], [True, False, False]]
    assert worker_devices(["OPTIX", "CUDA", "OPTIX"], "OPTIX", 1) == [False, False, True]
    assert worker_devices(["CPU"], "CUDA", 0) == [False]  # none: the caller reports it


def test_devices_name_their_backends() -> None:
    assert backends_to_try("cpu") == () and backends_to_try("optix") == ("OPTIX",)
    assert backends_to_try("cuda") == ("CUDA",) and "HIP" in backends_to_try("gpu")
    with pytest.raises(ValueError, match="metal"):
        backends_to_try("metal")
    with pytest.raises(ValueError, match="metal"):
        Renderer(1, device="metal")


def test_a_missing_gpu_is_one_line_naming_the_device(tmp_path: Path, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bpy")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    config = write_config(tmp_path / "c.toml", tmp_path / "data", splits=(
        "resolution = [16, 16]\nrender_samples = 1\nn_processes = 1\n"
        '[[dataset.split]]\nname = "train"\nn_samples = 1\n'))
    assert cli_tool.main([str(config), "--render-device", "cuda", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "render_device='cuda', but Cycles finds no CUDA device" in err
    assert "CUDA_VISIBLE_DEVICES=''" in err
    assert not list((tmp_path / "data" / "train").glob("*.png"))


def test_a_split_resumes_only_on_the_device_it_was_started_on(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "data", splits=TINY_SPLITS)
    renderer = FakeRenderer()
    renderer.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        cli_tool.render_dataset(config, render_fn=renderer, progress=False)
    args = json.loads((tmp_path / "data" / "train" / "split_args.json").read_text())
    assert args["render_device"] == "cpu"
    with pytest.raises(DatasetError, match="render_device = 'cpu', but the config now says "
                                           "'optix'"):
        cli_tool.render_dataset(config, render_fn=FakeRenderer(), progress=False,
                                render_device="optix")
    del args["render_device"]  # written before the key existed: it was the CPU
    (tmp_path / "data" / "train" / "split_args.json").write_text(json.dumps(args))
    cli_tool.render_dataset(config, render_fn=FakeRenderer(), progress=False)
