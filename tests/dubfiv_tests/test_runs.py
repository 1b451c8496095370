"""Loading run directories: ours, the released layout with legacy pickles, and errors."""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dubfiv import config as cfg
from dubfiv.flow import build_flow
from dubfiv.heads import LinearHead
from dubfiv.runs import RunError, load_run
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import CHECKPOINT, CheckpointError, LegacyObject, load_checkpoint, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("runs")
    write_fake_two4two(base / "fake", {"train": 32, "validation": 16}, image_size=16)
    config = tiny_experiment(base, n_train_samples=80, val_every_samples=0,
                             checkpoint_every_samples=0, sample_every_samples=0)
    return train(config, base / "out", device="cpu", progress=False)


def _outputs(flow: torch.nn.Module, head: torch.nn.Module, x: torch.Tensor) -> tuple:
    with torch.no_grad():
        out = flow(x, capture=(head.after_layer,))
        return out.h, out.logdet, head(out.activations[head.after_layer])


def test_load_our_run_round_trips(run_dir: Path) -> None:
    run = load_run(run_dir, device="cpu")
    state = torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert run.config_source == "experiment.toml"
    assert run.experiment == cfg.load_experiment(run_dir / "models" / "experiment.toml")
    assert run.history == state["history"] and run.run_dir == run_dir
    assert run.device == torch.device("cpu") and not run.flow.training
    assert run.input_shape == (3, 16, 16)
    assert run.checkpoint_info["samples_seen"] == 80
    # the same weights as stored, and the same outputs as a flow built by hand
    for name, value in run.flow.state_dict().items():
        assert torch.equal(value, state["model_state"][name])
    flow = build_flow(run.experiment.model)
    flow.load_state_dict(state["model_state"])
    head = LinearHead(384, 13)
    head.load_state_dict(state["classifiers"][0])
    x = torch.rand(3, 3, 16, 16)
    for got, expected in zip(_outputs(run.flow, run.heads[0], x), _outputs(flow, head, x),
                             strict=True):
        assert torch.equal(got, expected)


def test_missing_run_and_checkpoint_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=str(tmp_path / "nope")):
        load_run(tmp_path / "nope")
    (tmp_path / "empty" / "models").mkdir(parents=True)
    with pytest.raises(RunError) as info:
        load_run(tmp_path / "empty")
    assert str(tmp_path / "empty" / "models" / "models.torch") in str(info.value)


def test_truncated_checkpoint_is_a_clear_error(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "models"
    broken.mkdir(parents=True)
    data = (run_dir / CHECKPOINT).read_bytes()
    (broken / "models.torch").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"models\.torch"):
        load_run(broken.parent)


RELEASED_TOML = """
# written by the original code: keys our strict config does not know
[model]
n_levels = 2
[[classifiers]]
after_layer = 13
in_channels = 384
loss_weight = 1e-4
class_name = "LinearClassifier"
"""


def _released_run(tmp_path: Path, run_dir: Path) -> tuple[Path, dict]:
    """A run directory in the released layout whose pickle refers to classes that are gone."""
    package = types.ModuleType("dubfiv_legacy_fake")
    module = types.ModuleType("dubfiv_legacy_fake.config")
    package.config = module  # type: ignore[attr-defined]

    class Experiment:
        def __init__(self) -> None:
            self.name = "paper"
            self.lr = 5e-5

    class History(dict):
        pass

    for cls in (Experiment, History):
        cls.__module__ = module.__name__
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    sys.modules[package.__name__] = package
    sys.modules[module.__name__] = module
    ours = torch.load(run_dir / CHECKPOINT, weights_only=True)
    history = History(loss=[1.0, 0.5])
    released = {
        "model_state": {f"module.{k}": v for k, v in ours["model_state"].items()},
        "classifiers": ours["classifiers"],
        "optimizer": {"state": {}, "param_groups": []},
        "history": history,
        "image_sampler": np.arange(3),
        "experiment": Experiment(),
        "output_dir": "/somewhere/else",
    }
    folder = tmp_path / "released" / "models"
    folder.mkdir(parents=True)
    torch.save(released, folder / "models.torch")
    (folder / "experiment.toml").write_text(RELEASED_TOML)
    del sys.modules[module.__name__], sys.modules[package.__name__]
    return folder.parent, ours


def test_released_layout_with_legacy_classes_loads(run_dir: Path, tmp_path: Path) -> None:
    released, _ = _released_run(tmp_path, run_dir)
    with pytest.raises(ModuleNotFoundError):
        import dubfiv_legacy_fake  # noqa: F401  (the original code is really gone)
    state = load_checkpoint(released / "models" / "models.torch")
    experiment = state["experiment"]
    assert isinstance(experiment, LegacyObject)
    assert experiment._legacy_name == "dubfiv_legacy_fake.config.Experiment"
    assert experiment.name == "paper" and experiment.lr == 5e-5
    assert isinstance(state["image_sampler"], np.ndarray)
    assert state["history"]["loss"] == [1.0, 0.5]  # a dict subclass keeps its items
    run = load_run(released, device="cpu")
    assert run.config_source.startswith("state_dict")
    assert "unknown key" in run.config_source
    assert [h.after_layer for h in run.heads] == [13]
    assert run.experiment.classifiers[0].in_channels == 384
    assert run.raw_experiment["model"]["n_levels"] == 2
    ours_run = load_run(run_dir, device="cpu")
    assert run.experiment.model == ours_run.experiment.model  # architecture inferred exactly
    x = torch.rand(2, 3, 16, 16)
    for got, expected in zip(_outputs(run.flow, run.heads[0], x),
                             _outputs(ours_run.flow, ours_run.heads[0], x), strict=True):
        assert torch.equal(got, expected)


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.target}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("zipfile", [True, False])
def test_legacy_unpickler_runs_no_foreign_code(tmp_path: Path, zipfile: bool) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.torch"
    torch.save({"model_state": {"w": torch.arange(3)}, "payload": _Evil(target)}, path,
               pickle_protocol=2, _use_new_zipfile_serialization=zipfile)
    state = load_checkpoint(path)
    assert not target.exists()
    assert isinstance(state["payload"], LegacyObject)
    assert state["payload"]._legacy_args == (f"touch {target}",)
    assert torch.equal(state["model_state"]["w"], torch.arange(3))
    # the same with a plain (non-torch) pickle file
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"x": _Evil(target)}))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)  # not a torch checkpoint: a clear error, still no code run
    assert not target.exists()


def test_heads_without_after_layer_in_raw_toml_is_an_error(run_dir: Path, tmp_path: Path) -> None:
    released, _ = _released_run(tmp_path, run_dir)
    (released / "models" / "experiment.toml").write_text("[model]\nn_levels = 2\n")
    with pytest.raises(RunError, match="after_layer"):
        load_run(released)


def test_released_head_is_assumed_when_the_toml_names_no_layer(tmp_path: Path) -> None:
    """A run whose TOML names no after_layer but whose checkpoint has one head of 768
    features gets the released model's head position (641, docs/released_model.md), and that
    position fits the paper architecture; any other width stays an error."""
    from dubfiv.heads import check_heads
    from dubfiv.runs import _heads_from_raw

    [head] = _heads_from_raw({}, [{"fc.weight": torch.zeros(1, 768)}], tmp_path / "x.toml")
    assert (head.after_layer, head.in_channels, head.label) == (641, 768, "obj_name")
    paper = cfg.load_experiment(Path(__file__).resolve().parents[2] / "config" / "model.toml")
    check_heads([head], paper.model)  # layer 641 of the paper architecture has 768 features
    with pytest.raises(RunError, match="after_layer"):
        _heads_from_raw({}, [{"fc.weight": torch.zeros(1, 384)}], tmp_path / "x.toml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_asking_for_missing_cuda_is_a_clear_error(run_dir: Path) -> None:
    from dubfiv.runs import resolve_device

    assert resolve_device(None).type == "cpu" and resolve_device("cpu").type == "cpu"
    with pytest.raises(RunError, match="`device` cuda: CUDA is not available"):
        load_run(run_dir, device="cuda")


def test_head_and_dataset_location(run_dir: Path) -> None:
    run = load_run(run_dir, device="cpu")
    assert run.head(0) is run.heads[0]
    with pytest.raises(RunError, match=r"head 5 does not exist \(the run has 1 heads\)"):
        run.head(5)
    train = run.experiment.train
    assert run.dataset_location() == (Path(train.dataset_dir), train.dataset)
    assert run.dataset_location("elsewhere", "other") == (Path("elsewhere"), "other")
