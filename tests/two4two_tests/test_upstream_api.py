"""Upstream two4two (v0.0.4) code runs unchanged: one test per name / behaviour
(docs/two4two_api.md)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import scipy.stats
import toml
from sklearn.metrics import roc_auc_score
from two4two_fakes import FakeRenderer, fake_image

import two4two
from two4two import utils
from two4two.scene_parameters import SAMPLED_ATTRIBUTES, SceneParameters

matplotlib.use("Agg")

PI = math.pi
REPO = Path(__file__).resolve().parents[2]
HAS_BPY = importlib.util.find_spec("bpy") is not None


def ks_pvalue(values: np.ndarray, cdf) -> float:
    return scipy.stats.kstest(np.asarray(values, dtype=np.float64), cdf).pvalue


def truncated_normal_cdf(mean: float, std: float, low: float, high: float):
    """From the normal CDF alone (independent of scipy's truncnorm)."""
    phi = scipy.stats.norm(mean, std).cdf
    return lambda x: np.clip((phi(x) - phi(low)) / (phi(high) - phi(low)), 0.0, 1.0)


def uniform_cdf(low: float, high: float):
    return lambda x: np.clip((np.asarray(x) - low) / (high - low), 0.0, 1.0)


def draw(sampler, n: int = 1000, seed: int = 0, method: str = "sample") -> list:
    np.random.seed(seed)
    return [getattr(sampler, method)() for _ in range(n)]


def column(scenes, attr: str) -> np.ndarray:
    return np.array([getattr(p, attr) for p in scenes], dtype=np.float64)


def stretchy(scenes) -> np.ndarray:
    return np.array([p.obj_name == "stretchy" for p in scenes])


@pytest.fixture
def fake_render(monkeypatch) -> FakeRenderer:
    """``two4two.blender.render`` replaced by the fake renderer."""
    fake = FakeRenderer()
    monkeypatch.setattr(two4two.blender, "render", fake)
    return fake


# --------------------------------------------------------------------------- plotvis


def test_notebook_cell_render_grid_draws_a_grid(fake_render) -> None:
    """The notebook cell, as written upstream, draws Peaky and Stretchy columns."""
    namespace = {"two4two": two4two, "np": np}
    np.random.seed(3)
    exec("from two4two.plotvis import render_grid\n"
         "result = render_grid([two4two.Sampler().sample() for _ in range(6)])",
         namespace)
    fig, axes = namespace["result"]
    assert len(fake_render.calls) == 1 and len(fake_render.rendered) == 6  # one render call
    assert isinstance(fig, matplotlib.figure.Figure)
    assert axes.shape[1] == 6
    assert [ax.get_title() for ax in axes[0]] == ["Peaky"] * 3 + ["Stretchy"] * 3
    assert sum(len(ax.images) for ax in axes.flat) == 6


def test_render_grid_places_each_class_in_its_columns(fake_render) -> None:
    np.random.seed(1)
    params = [two4two.Sampler().sample(obj_name=name)
              for name in ["peaky", "stretchy", "peaky", "peaky", "stretchy", "peaky"]]
    for p in params:
        p.resolution = (8, 8)
    from two4two.plotvis import render_grid

    _fig, axes = render_grid(params, num_cols_per_class=2, label_class_axis=True)
    peakies = [p for p in params if p.obj_name == "peaky"]
    stretchies = [p for p in params if p.obj_name == "stretchy"]
    assert axes.shape == (2, 4)  # 4 peakies over 2 columns -> 2 rows
    expected = {(0, 0): peakies[0], (0, 1): peakies[1], (1, 0): peakies[2],
                (1, 1): peakies[3], (0, 2): stretchies[0], (0, 3): stretchies[1]}
    for (r, c), p in expected.items():
        np.testing.assert_array_equal(axes[r, c].images[0].get_array(), fake_image(p)[0])
        assert axes[r, c].get_xlabel() == ("Peaky" if p.obj_name == "peaky" else "Stretchy")
    assert not axes[1, 2].images and not axes[1, 3].images  # empty cells
    # in order, without class columns
    _fig, axes = render_grid(params, num_cols_per_class=1, equal_class_distribution=False)
    assert axes.shape == (3, 2) and all(ax.get_title() == "" for ax in axes[0])
    np.testing.assert_array_equal(axes[1, 1].images[0].get_array(), fake_image(params[3])[0])
    with pytest.raises(ValueError, match="num_cols_per_class"):
        render_grid(params, num_cols_per_class=0)


def test_render_single_param_returns_the_figure(fake_render) -> None:
    from two4two.plotvis import render_single_param

    p = SceneParameters.default_stretchy()
    p.resolution = (8, 8)
    fig, ax = render_single_param(p)
    np.testing.assert_array_equal(ax.images[0].get_array(), fake_image(p)[0])
    assert ax.get_title() == "Stretchy" and isinstance(fig, matplotlib.figure.Figure)


@pytest.mark.skipif(not HAS_BPY, reason="needs bpy")
def test_render_grid_renders_for_real() -> None:
    """A tiny grid through the real renderer (16x16 pixels, 1 Cycles sample)."""
    from two4two.plotvis import render_grid

    params = [two4two.Sampler().sample(obj_name=n) for n in ("peaky", "stretchy")]
    for p in params:
        p.resolution = (16, 16)
    _fig, axes = render_grid(params, num_cols_per_class=1, samples=1, n_processes=1)
    images = [axes[0, c].images[0].get_array() for c in range(2)]
    assert all(image.shape == (16, 16, 3) and image.dtype == np.uint8 for image in images)
    assert all(image.std() > 0 for image in images)  # an animal on a background


def test_blender_is_reachable_after_a_plain_import() -> None:
    code = ("import sys, two4two\n"
            "assert 'two4two.blender' not in sys.modules\n"
            "assert callable(two4two.blender.render)\n"
            "assert callable(two4two.plotvis.render_grid)\n"
            "assert 'bpy' not in sys.modules and 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- samplers


def test_medvar_samplers_exist_and_bias_as_named() -> None:
    names = ["MedVarSampler", "MedVarColorSampler", "MedVarSpherSampler",
             "MedVarSpherColorSampler", "MedVarNoArmsSampler"]
    for name in names:
        assert getattr(two4two, name) is getattr(two4two.bias, name)
        assert issubclass(getattr(two4two, name), two4two.Sampler)
    base = draw(two4two.MedVarSampler())
    assert ks_pvalue(column(base, "obj_rotation_pitch"),
                     truncated_normal_cdf(0, PI / 8, -PI / 4, PI / 4)) > 1e-3
    assert abs(roc_auc_score(stretchy(base), column(base, "obj_color")) - 0.5) < 0.06
    color = draw(two4two.MedVarColorSampler())
    assert roc_auc_score(stretchy(color), -column(color, "obj_color")) > 0.7
    spher = draw(two4two.MedVarSpherSampler())
    assert roc_auc_score(stretchy(spher), -column(spher, "spherical")) > 0.7
    no_arms = draw(two4two.MedVarNoArmsSampler())
    arm, y = column(no_arms, "arm_position"), stretchy(no_arms)
    assert abs(roc_auc_score(y, arm) - 0.5) < 0.06
    assert roc_auc_score(y, -column(no_arms, "obj_color")) > 0.7
    assert roc_auc_score(y, -column(no_arms, "spherical")) > 0.7


def test_sample_is_a_static_method_with_size() -> None:
    dist = {"peaky": scipy.stats.uniform(0, 1), "stretchy": scipy.stats.uniform(5, 1)}
    np.random.seed(0)
    one = two4two.Sampler._sample("stretchy", dist)
    assert isinstance(one, float) and 5 <= one <= 6
    three = two4two.bias.Sampler._sample("peaky", dist, size=3)
    assert isinstance(three, tuple) and len(three) == 3 and len(set(three)) == 3
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in three)
    assert two4two.Sampler._sample("peaky", 7, size=2) == (7, 7)
    assert two4two.Sampler._sample(None, lambda: "x") == "x"


def test_sample_truncated_stays_in_bounds_and_is_truncated() -> None:
    np.random.seed(1)
    values = two4two.Sampler._sample_truncated("peaky", scipy.stats.norm(0, 1), size=1500,
                                               min=-0.5, max=1.5)
    values = np.asarray(values)
    assert values.shape == (1500,) and values.min() >= -0.5 and values.max() <= 1.5
    assert ks_pvalue(values, truncated_normal_cdf(0, 1, -0.5, 1.5)) > 1e-3
    # per-class dict, one value, one-sided bound
    v = two4two.Sampler._sample_truncated(
        "stretchy", {"peaky": 0.0, "stretchy": scipy.stats.norm(3, 1)}, max=2.0)
    assert isinstance(v, float) and v <= 2.0


def test_color_maps_are_dataclass_fields() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(two4two.Sampler)}
    assert fields["obj_color_map"] == "coolwarm" and fields["bg_color_map"] == "coolwarm"
    sampler = two4two.Sampler()
    sampler.bg_color_map = "tab20c"  # as upstream's notebook does
    p = sampler.sample()
    assert p.bg_color_rgba == pytest.approx(matplotlib.colormaps["tab20c"](p.bg_color))
    viridis = matplotlib.colormaps["viridis"]
    p = two4two.Sampler(obj_color_map=viridis).sample()
    assert p.obj_color_rgba == pytest.approx(viridis(p.obj_color))
    assert two4two.ColorBiasedSampler().obj_color_map == "seismic"
    assert sampler._bg_cmap(p).name == "tab20c"
    assert tuple(sampler._obj_cmap(p)(0.3)) == pytest.approx(
        matplotlib.colormaps["coolwarm"](0.3))
    with pytest.raises(ValueError, match=r"bg_color_map.*no_such_map"):
        two4two.Sampler(bg_color_map="no_such_map")


def test_sample_with_obj_name_marks_it_sampled() -> None:
    p = two4two.Sampler().sample(obj_name="peaky")
    assert p.obj_name == "peaky" and p.get_status("obj_name") == "sampled"


def test_sample_unbiased_leaves_every_attribute_sampled() -> None:
    for sampler in (two4two.Sampler(), two4two.ColorBiasedSampler()):
        for p in draw(sampler, n=20, method="sample_unbiased"):
            assert {a: p.get_status(a) for a in SAMPLED_ATTRIBUTES} == dict.fromkeys(
                SAMPLED_ATTRIBUTES, "sampled")


def test_high_variation_color_biased_is_high_variation_without_color_bias() -> None:
    cls = two4two.HighVariationColorBiasedSampler
    assert cls.__bases__ == (two4two.HighVariationSampler,)
    assert not issubclass(cls, two4two.ColorBiasedSampler)
    scenes = draw(cls(), n=1500)
    y = stretchy(scenes)
    color = column(scenes, "obj_color")
    assert ks_pvalue(color[y], uniform_cdf(0, 1)) > 1e-3
    assert ks_pvalue(color[~y], uniform_cdf(0, 1)) > 1e-3
    assert ks_pvalue(column(scenes, "bg_color"), uniform_cdf(0.05, 0.95)) > 1e-3
    assert ks_pvalue(column(scenes, "obj_rotation_roll"), uniform_cdf(-PI / 3, PI / 3)) > 1e-3
    coolwarm = matplotlib.colormaps["coolwarm"]
    for p in scenes[:10]:
        assert p.obj_color_rgba == pytest.approx(coolwarm(p.obj_color))
        assert p.bg_color_rgba == pytest.approx(coolwarm(p.bg_color))


def test_study_sampler_class_defaults_and_released_configs() -> None:
    from dubfiv.data_generation import RELEASED_SAMPLER_CONFIG, SamplerObjColorAndSpherical

    sampler = SamplerObjColorAndSpherical()
    assert (sampler.obj_color_uniform_prob, sampler.spherical_uniform_prob) == (0.2, 0.2)
    assert RELEASED_SAMPLER_CONFIG["obj_color_uniform_prob"] == 0.15
    assert RELEASED_SAMPLER_CONFIG["spherical_uniform_prob"] == 0.33
    for name in ("dataset_config.toml", "dataset_config_unbiased.toml"):
        config = toml.loads((REPO / "config" / name).read_text())["dataset"][0]
        assert config["sampler_config"]["obj_color_uniform_prob"] == 0.15, name
        assert config["sampler_config"]["spherical_uniform_prob"] == 0.33, name


def test_make_interventions_upstream_keyword_and_groups() -> None:
    sampler = two4two.Sampler()
    originals = draw(sampler, n=5)
    clones = sampler.make_interventions(originals, interventions=["rotation", "position",
                                                                  "color"])
    group = ("obj_rotation_roll", "obj_rotation_pitch", "obj_rotation_yaw",
             "position_x", "position_y", "obj_color", "bg_color")
    for original, clone in zip(originals, clones, strict=True):
        assert clone.is_clone_of(original=original)
        for attr in SAMPLED_ATTRIBUTES:
            want = "resampled" if attr in group else "sampled"
            assert clone.get_status(attribute=attr) == want, attr
            if attr in group:
                assert getattr(clone, attr) != getattr(original, attr)
    assert len(sampler.make_interventions(originals, attrs=["bending"])) == 5  # ours
    with pytest.raises(ValueError, match="wings"):
        sampler.make_interventions(originals, interventions=["wings"])


# --------------------------------------------------------------------------- scene parameters


def test_scene_parameters_defaults_are_upstreams() -> None:
    p = SceneParameters()
    assert p.obj_color_rgba == pytest.approx(matplotlib.colormaps["seismic"](0.5))
    assert p.bg_color_rgba == pytest.approx(matplotlib.colormaps["binary"](0.45))


def test_scene_parameters_upstream_names() -> None:
    from two4two.scene_parameters import OBJ_NAME_TO_INT, split_peaky_stretchy

    assert OBJ_NAME_TO_INT == {"peaky": 0, "stretchy": 1}
    p = SceneParameters(obj_name="peaky", labeling_error=True)
    assert p.obj_name_with_label_error() == "stretchy"
    assert SceneParameters(obj_name="peaky").obj_name_with_label_error() == "peaky"
    scenes = draw(two4two.Sampler(), n=30)
    peakies, stretchies = split_peaky_stretchy(scenes, 4)
    assert peakies == [s for s in scenes if s.obj_name == "peaky"][:4]
    assert stretchies == [s for s in scenes if s.obj_name == "stretchy"][:4]


def test_status_methods_take_upstream_keywords_and_unknown_is_value_error() -> None:
    p = SceneParameters()
    p.mark_sampled(attribute="bending")
    p.mark_custom(attribute="spherical")
    assert p.get_status(attribute="bending") == "sampled"
    assert p.get_status(attr="spherical") == "custom"  # ours still works
    with pytest.raises(ValueError, match="wings"):
        p.mark_custom("wings")
    with pytest.raises(TypeError, match="alias"):
        p.get_status(attribute="bending", attr="bending")


def test_labeling_error_accepts_0_and_1() -> None:
    for value in (0, 1, 0.0, 1.0, np.True_, np.int64(0)):
        p = SceneParameters(labeling_error=value)  # type: ignore[arg-type]
        p.check_values()
        assert p.label == ("stretchy" if value else "peaky")
    for bad in (2, 0.5, "1", None):
        with pytest.raises(ValueError, match="labeling_error"):
            SceneParameters(labeling_error=bad).check_values()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labeling_error") as info:
        SceneParameters(labeling_error=2).check_values()  # type: ignore[arg-type]
    from two4two.errors import Two4TwoError

    assert isinstance(info.value, Two4TwoError)  # the CLI reports it in one line


# --------------------------------------------------------------------------- utils


def test_utils_upstream_names() -> None:
    assert utils.FULL_CIRCLE == pytest.approx(2 * PI)
    assert utils.QUARTER_CIRCLE == pytest.approx(PI / 2)
    assert isinstance(utils.T, type(utils.T)) and utils.T.__name__ == "T"
    assert utils.get(None, 3) == 3 and utils.get(0, 3) == 0
    assert utils.split_class("two4two.bias.Sampler") == ("two4two.bias", "Sampler")
    assert utils.import_class("two4two.bias", "Sampler") is two4two.Sampler
    assert utils.import_class(*utils.split_class("two4two.Sampler")) is two4two.Sampler
    x = utils.numpy_to_python_scalar(np.float32(0.5))
    assert type(x) is float and x == 0.5
    assert type(utils.numpy_to_python_scalar(np.array([3]))) is int
    assert utils.numpy_to_python_scalar("s") == "s"
    assert utils.supports_iteration([1]) and utils.supports_iteration(np.zeros(2))
    assert not utils.supports_iteration(1.0)
    dist = utils.truncated_normal()
    assert dist.support() == pytest.approx((-3.0, 2.0)) and dist.dist.name == "truncnorm"
    np.random.seed(2)
    assert ks_pvalue(dist.rvs(size=1000), truncated_normal_cdf(0, 1, -3, 2)) > 1e-3


def test_discrete_is_a_distribution_class() -> None:
    probs = {"a": 0.2, "b": 0.5, 7: 0.3}
    dist = utils.discrete(probs)
    assert isinstance(dist, utils.discrete)
    assert sum(dist.pmf(k) for k in probs) == pytest.approx(1.0)
    assert dist.pmf("zzz") == 0.0 and dist.logpmf("zzz") == -np.inf
    assert dist.logpmf("b") == pytest.approx(math.log(0.5))
    np.random.seed(0)
    draws = [dist.rvs() for _ in range(4000)]
    for value, p in probs.items():
        frequency = np.mean([d == value for d in draws])
        assert frequency == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / 4000))
    assert dist() in probs
    many = utils.discrete({0: 1, 1: 3}).rvs(size=2000)
    assert many.shape == (2000,) and np.mean(many) == pytest.approx(0.75, abs=0.04)


# --------------------------------------------------------------------------- pytorch


@pytest.fixture
def split_root(tmp_path) -> Path:
    from two4two_fakes import TINY_SPLITS, write_config

    from two4two.cli_tool import render_dataset

    config = write_config(tmp_path / "tiny.toml", tmp_path / "data", splits=TINY_SPLITS)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    return tmp_path / "data"


def test_filter_and_all_attributes_are_row_functions(split_root) -> None:
    pytest.importorskip("torch")
    from two4two.pytorch import Two4Two, all_attributes, filter_attributes

    dataset = Two4Two(root_dir=str(split_root), split="test")
    scenes = dataset.params
    row = filter_attributes(scenes[0])
    assert row["id"] == scenes[0].id and row["obj_color"] == scenes[0].obj_color
    assert not any(k.startswith("attribute_status_") or k.endswith("_rgba") for k in row)
    full = all_attributes(scenes[0])
    assert {k: v for k, v in full.items() if k in row} == row
    assert {k for k in full if k not in row} == {
        f"attribute_status_{a}" for a in SAMPLED_ATTRIBUTES}
    frame = dataset.get_dataframe(to_dict=all_attributes)
    assert list(frame["attribute_status_obj_color"]) == ["sampled"] * len(scenes)
    assert "attribute_status_obj_color" not in dataset.get_dataframe().columns
    assert "attribute_status_obj_color" not in dataset.get_dataframe(
        to_dict=filter_attributes).columns


def test_two4two_label_helpers_and_keywords(split_root) -> None:
    pytest.importorskip("torch")
    from two4two.pytorch import Two4Two

    dataset = Two4Two(root_dir=split_root, split="train")
    assert Two4Two(root=split_root, split="train").root == dataset.root  # ours
    assert [Two4Two.int_to_obj_name(i) for i in (0, 1)] == ["peaky", "stretchy"]
    assert dataset.int_to_obj_name(1.0) == "stretchy"
    with pytest.raises(ValueError):
        Two4Two.int_to_obj_name(2)
    names = [Two4Two.segmentation_int_to_label(i) for i in range(9)]
    assert names[0] == "background" and len(set(names)) == 9
    assert [Two4Two.segmentation_label_to_int(n) for n in names] == list(range(9))
    assert names[1:] == list(two4two._blender.geometry.BLOCK_NAMES)
    with pytest.raises(ValueError):
        Two4Two.segmentation_int_to_label(9)
    dataset.set_return_attributes(labels=["obj_name", "bending"])
    assert dataset.get_label_names() == ["obj_name", "bending"]
    _, _, labels = dataset[0]
    assert labels.tolist() == pytest.approx(
        [float(dataset.params[0].obj_name == "stretchy"), dataset.params[0].bending])


# --------------------------------------------------------------------------- dataset TOML / CLI


UPSTREAM_TOML = """
[nobias]
sampler = "two4two.Sampler"
output_dir = "{out}/nobias"
n_processes = 1
download_blender = true
force_overwrite = false
debug = false
resolution = [16, 16]

[nobias.train]
n_samples = 4

[nobias.test]
n_samples = 3

[colorbias]
sampler = "two4two.ColorBiasedSampler"
output_dir = "{out}/colorbias"

[colorbias.train]
n_samples = 2
"""


def test_render_dataset_reads_upstreams_toml_form(tmp_path) -> None:
    from two4two.cli_tool import render_dataset
    from two4two.dataset_config import DatasetConfigError, load_dataset_configs
    from two4two.scene_parameters import load_jsonl

    path = tmp_path / "upstream.toml"
    path.write_text(UPSTREAM_TOML.format(out=tmp_path), encoding="utf-8")
    configs = load_dataset_configs(path)
    assert [c.sampler for c in configs] == ["two4two.Sampler", "two4two.ColorBiasedSampler"]
    assert [[s.name for s in c.split] for c in configs] == [["train", "test"], ["train"]]
    renderer = FakeRenderer()
    written = render_dataset(config_file=path, render_fn=renderer, progress=False)
    assert written == [tmp_path / "nobias" / "train", tmp_path / "nobias" / "test",
                       tmp_path / "colorbias" / "train"]
    assert [len(load_jsonl(d / "parameters.jsonl")) for d in written] == [4, 3, 2]
    # errors name the upstream table
    path.write_text(UPSTREAM_TOML.format(out=tmp_path).replace(
        "n_samples = 3", "n_sample = 3"), encoding="utf-8")
    with pytest.raises(DatasetConfigError, match=r"nobias\.test\.n_sample"):
        load_dataset_configs(path)


def test_cli_reports_any_two4two_error_in_one_line(monkeypatch, capsys) -> None:
    from two4two import cli_tool
    from two4two.errors import Two4TwoError
    from two4two.scene_parameters import UnknownAttributeError

    class CustomError(Two4TwoError):
        pass

    for error in (CustomError("first line\nsecond line"), UnknownAttributeError("bad attr")):
        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(cli_tool, "render_dataset", fail)
        assert cli_tool.main(["whatever.toml"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("two4two_render_dataset: error: ")
        assert len(err.strip().splitlines()) == 1 and str(error).split()[0] in err
