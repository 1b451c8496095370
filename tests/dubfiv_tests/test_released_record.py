"""The released model as one record (docs/released_model.md) and loading a released run
folder from its own experiment.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dubfiv import config as cfg
from dubfiv.config import (
    ClassifierConfig,
    ExperimentConfig,
    FadeOutAndPool,
    FlowBlocks,
    ModelConfig,
)
from dubfiv.flow import build_flow, plan_layers
from dubfiv.heads import build_heads
from dubfiv.released import RELEASED_MODEL
from dubfiv.rundir import CHECKPOINT, EXPERIMENT
from dubfiv.runs import ReleasedKeysWarning, load_run

ROOT = Path(__file__).resolve().parents[2]


def _script_value(name: str) -> str:
    text = (ROOT / "download_artifacts.sh").read_text()
    match = re.search(rf'^{name}="([^"]+)"$', text, re.MULTILINE)
    assert match, f"download_artifacts.sh has no {name}=..."
    return match.group(1)


def test_download_script_fetches_the_recorded_model() -> None:
    url = f"{_script_value('BASE_URL_DEFAULT')}/{_script_value('MODEL_ARCHIVE')}"
    assert url == RELEASED_MODEL.url
    assert _script_value("MODEL_ARCHIVE") == RELEASED_MODEL.archive
    assert _script_value("MODEL_DIRNAME") == RELEASED_MODEL.name
    size = re.search(r"--model +the trained model \(~([\d.]+) GB\)",
                     (ROOT / "download_artifacts.sh").read_text())
    assert size and float(size.group(1)) == pytest.approx(RELEASED_MODEL.archive_bytes / 1e9)


def test_record_matches_the_paper_config() -> None:
    """The record's numbers are those of config/model.toml, computed by the builder."""
    paper = cfg.load_experiment(ROOT / "config" / "model.toml")
    plan = plan_layers(paper.model)
    assert len(plan) == RELEASED_MODEL.n_layers
    assert plan[0].input_shape == RELEASED_MODEL.input_shape
    [head] = paper.classifiers
    assert (head.after_layer, head.label) == (RELEASED_MODEL.head_after_layer,
                                              RELEASED_MODEL.head_label)
    assert plan[head.after_layer].n_features == RELEASED_MODEL.head_in_features


TINY = ExperimentConfig(
    model=ModelConfig(layers=[FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
                              FlowBlocks(n_blocks=1, block_channels=8),
                              FadeOutAndPool(channels_to_keep="half", pool=2),
                              FlowBlocks(n_blocks=1, block_channels=8)],
                      image_size=8, in_channels=3),
    classifiers=[ClassifierConfig(after_layer=9, in_channels=96)],
    marker="released_fake")


def _released_folder(tmp_path: Path, extra: str) -> tuple[Path, torch.nn.Module,
                                                           torch.nn.Module]:
    """A tiny run folder in the released layout: the pickle's keys, ``module.`` keys
    (saved from DDP) and an experiment.toml with the released run's extra keys."""
    torch.manual_seed(0)
    flow = build_flow(TINY.model)
    flow.data_init(torch.rand(4, 3, 8, 8))
    heads = build_heads(TINY.classifiers, TINY.model)
    state = {"model_state": {f"module.{k}": v for k, v in flow.state_dict().items()},
             "classifiers": [heads[0].state_dict()], "optimizer": {}, "history": {},
             "image_sampler": None, "experiment": {"name": "paper"},
             "output_dir": "/original/machine/run"}
    assert set(state) == set(RELEASED_MODEL.checkpoint_keys)
    run = tmp_path / RELEASED_MODEL.name
    (run / CHECKPOINT).parent.mkdir(parents=True)
    torch.save(state, run / CHECKPOINT)
    (run / EXPERIMENT).write_text(extra + cfg.dumps(TINY))
    return run, flow.eval(), heads[0].eval()


def test_released_folder_loads_from_its_toml(tmp_path: Path) -> None:
    run_dir, flow, head = _released_folder(tmp_path, 'output_dir = "/original/machine"\n')
    with pytest.warns(ReleasedKeysWarning, match="output_dir"):
        run = load_run(run_dir, device="cpu")
    assert run.config_source == "experiment.toml (released keys ignored: output_dir)"
    assert run.experiment == TINY
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        expected = head(flow(x, end=10).h)
        got = run.heads[0](run.flow(x, end=10).h)
    assert torch.equal(got, expected)


def test_unknown_keys_beside_the_released_ones_are_still_rejected(tmp_path: Path) -> None:
    """The TOML is not used (the architecture is inferred instead), and the reason names
    the unknown key."""
    run_dir, _, _ = _released_folder(tmp_path, 'output_dir = "/x"\nbogus = 1\n')
    run = load_run(run_dir, device="cpu")
    assert run.config_source.startswith("state_dict") and "'bogus'" in run.config_source
    assert "output_dir" not in run.config_source
    assert run.experiment.model == TINY.model  # inferred from the weights instead
