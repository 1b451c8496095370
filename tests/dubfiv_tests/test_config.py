"""Experiment configs: the paper's values, round trips, strict errors, the three-file form."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dubfiv import config as cfg

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "model.toml"
SMALL = ROOT / "config" / "small_model.toml"
PARTS = ROOT / "config" / "model_parts"


def test_paper_config_has_the_papers_values() -> None:
    exp = cfg.load_experiment(PAPER)
    assert exp.model.image_size == 128 and exp.model.in_channels == 3
    pools = exp.model.layers[0::2]
    blocks = exp.model.layers[1::2]
    assert len(exp.model.layers) == 14
    assert all(isinstance(p, cfg.FadeOutAndPool) and p.pool == 2 for p in pools)
    assert [p.channels_to_keep for p in pools] == ["no_fade_out"] + ["half"] * 6
    assert all(isinstance(b, cfg.FlowBlocks) and b.n_blocks == 32 for b in blocks)
    assert [b.block_channels for b in blocks] == [48, 128, 384, 512, 512, 512, 512]
    assert [b.conv_1x1_kernel for b in blocks] == [False] * 6 + [True]
    train = exp.train
    assert train.optimizer.name == "adam" and train.optimizer.lr == 5e-5
    assert train.optimizer.schedule == cfg.ScheduleConfig("fade_in_cosine", 200_000)
    assert train.batch_size == 40 and train.n_train_samples == 2_500_000
    assert train.dataset == (
        "two4two_obj_color_and_spherical_finer_search_spherical_uniform_0.33_uniform_0.15"
    )
    (head,) = exp.classifiers
    assert (head.after_layer, head.in_channels, head.label) == (641, 768, "obj_name")
    assert head.loss_weight == 1e-4 and head.label_noise == 0.1 and head.backpropagate_loss
    assert head.optimizer.name == "sgd" and head.optimizer.lr == 0.1
    assert head.optimizer.schedule.name == "hill"


def test_three_file_form_equals_one_file_form() -> None:
    parts = cfg.load_experiment_parts(
        PARTS / "model.toml", PARTS / "train.toml", PARTS / "classifiers.toml"
    )
    assert parts == cfg.load_experiment(PAPER)


def test_three_file_form_with_top_level_keys(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text('image_size = 32\n[[layers]]\nname = "flow_blocks"\n')
    (tmp_path / "t.toml").write_text("batch_size = 8\n")
    exp = cfg.load_experiment_parts(tmp_path / "m.toml", tmp_path / "t.toml")
    assert exp.model.image_size == 32 and exp.train.batch_size == 8
    assert exp.model.layers == [cfg.FlowBlocks()] and exp.classifiers == []
    (tmp_path / "c.toml").write_text("[[classifiers]]\nafter_layer = 3\n[extra]\n")
    with pytest.raises(cfg.ConfigError, match=r"c\.toml.*'extra'"):
        cfg.load_experiment_parts(tmp_path / "m.toml", tmp_path / "t.toml", tmp_path / "c.toml")


@pytest.mark.parametrize("text", ["seeed = 3\n[train]\nbatch_size = 8\n",
                                  "[train]\nbatch_size = 8\n[bogus]\nx = 1\n"])
def test_three_file_form_rejects_keys_beside_the_section(tmp_path: Path, text: str) -> None:
    """A typo or an extra table beside [train] would be silently ignored: it is an error
    naming the file and the key."""
    (tmp_path / "m.toml").write_text("image_size = 32\n")
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(cfg.ConfigError, match=r"t\.toml: key '(seeed|bogus)'.*`experiment`"):
        cfg.load_experiment_parts(tmp_path / "m.toml", tmp_path / "t.toml")
    # the whole paper experiment given as the model part is refused, not half read
    with pytest.raises(cfg.ConfigError, match=r"model\.toml: key '(classifiers|train)'"):
        cfg.load_experiment_parts(PAPER, PARTS / "train.toml")


@pytest.mark.parametrize("path", [PAPER, SMALL])
def test_round_trip_through_a_file(path: Path, tmp_path: Path) -> None:
    exp = cfg.load_experiment(path)
    out = cfg.save_experiment(exp, tmp_path / "models" / "experiment.toml")
    again = cfg.load_experiment(out)
    assert again == exp
    assert cfg.to_dict(again) == cfg.to_dict(exp)
    assert not [p for p in out.parent.iterdir() if p.name != "experiment.toml"]  # no temp files


def test_round_trip_of_every_variant(tmp_path: Path) -> None:
    exp = cfg.ExperimentConfig(
        model=cfg.ModelConfig(
            layers=[
                cfg.FadeOutAndPool(channels_to_keep=5, pool=1),
                cfg.FlowBlocks(n_blocks=2, coupling="additive", conv_1x1_kernel=True),
                cfg.FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
            ],
            image_size=16,
        ),
        train=cfg.TrainConfig(logger="tensorboard", max_grad_norm=1.5),
        classifiers=[cfg.ClassifierConfig(after_layer=4, in_channels=10, label_noise=0.25),
                     cfg.ClassifierConfig(after_layer=7, backpropagate_loss=False)],
        marker="x",
    )
    assert cfg.load_experiment(cfg.save_experiment(exp, tmp_path / "e.toml")) == exp


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[train]\nbach_size = 4\n", "train.bach_size"),
        ("[train.optimizer]\nlrr = 0.1\n", "train.optimizer.lrr"),
        ("[[model.layers]]\nname = \"flow_blocks\"\nwidth = 3\n", "model.layers[0].width"),
        ("[[classifiers]]\nafter_layer = 1\nweight = 2.0\n", "classifiers[0].weight"),
        ("unknown_top = 1\n", "unknown_top"),
    ],
)
def test_unknown_keys_name_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load_experiment(path)
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and "unknown key" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[train]\nbatch_size = \"40\"\n", "train.batch_size"),
        ("[train]\nbatch_size = 4.5\n", "train.batch_size"),
        ("[train]\nbatch_size = true\n", "train.batch_size"),
        ("[train]\ndequantize = 1\n", "train.dequantize"),
        ("[train]\nlogger = \"mlflow\"\n", "train.logger"),
        ("[train.optimizer]\nlr = \"fast\"\n", "train.optimizer.lr"),
        ("[train.optimizer.schedule]\nname = \"linear\"\n", "train.optimizer.schedule.name"),
        ("[[model.layers]]\nname = \"conv\"\n", "model.layers[0].name"),
        ("[[model.layers]]\nname = \"fade_out_and_pool\"\nchannels_to_keep = \"all\"\n",
         "model.layers[0].channels_to_keep"),
        ("[model]\nlayers = 3\n", "model.layers"),
        ("classifiers = 3\n", "classifiers"),
    ],
)
def test_wrong_types_name_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load_experiment(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="not found"):
        cfg.load_experiment(tmp_path / "nope.toml")
    with pytest.raises(cfg.ConfigError, match="not valid TOML"):
        cfg.load_experiment(_write(tmp_path, "[train\n"))


def test_integer_float_is_accepted_as_float(tmp_path: Path) -> None:
    exp = cfg.load_experiment(_write(tmp_path, "[train.optimizer]\nlr = 1\n"))
    assert exp.train.optimizer.lr == 1.0 and isinstance(exp.train.optimizer.lr, float)


def _all_fields(cls: type, seen: set) -> list[dataclasses.Field]:
    out = []
    for field in dataclasses.fields(cls):
        out.append(field)
    for sub in (cfg.ModelConfig, cfg.TrainConfig, cfg.ClassifierConfig, cfg.OptimizerConfig,
                cfg.ScheduleConfig, cfg.FadeOutAndPool, cfg.FlowBlocks):
        if sub not in seen:
            seen.add(sub)
            out.extend(_all_fields(sub, seen))
    return out


def test_every_field_has_help_text() -> None:
    for field in _all_fields(cfg.ExperimentConfig, {cfg.ExperimentConfig}):
        assert field.metadata.get("help", "").strip(), field.name
