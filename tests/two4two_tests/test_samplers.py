"""Samplers: distributions, statuses, interventions and the paper's biased sampler."""

from __future__ import annotations

import dataclasses
import math

import matplotlib
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

import two4two
from dubfiv.data_generation import RELEASED_SAMPLER_CONFIG, SamplerObjColorAndSpherical
from two4two.bias import SAMPLING_ORDER
from two4two.scene_parameters import SAMPLED_ATTRIBUTES

N = 2000
PI = math.pi


def draw(sampler: two4two.Sampler, n: int = N, seed: int = 0, **kwargs) -> list:
    np.random.seed(seed)
    return [sampler.sample(**kwargs) for _ in range(n)]


def column(scenes: list, attr: str) -> np.ndarray:
    return np.array([getattr(p, attr) for p in scenes], dtype=np.float64)


def is_stretchy(scenes: list) -> np.ndarray:
    return np.array([p.obj_name == "stretchy" for p in scenes])


def truncnorm_cdf(mean: float, std: float, low: float, high: float):
    """CDF of a truncated normal from the normal CDF (independent of scipy's truncnorm)."""
    phi = scipy.stats.norm(mean, std).cdf

    def cdf(x: np.ndarray) -> np.ndarray:
        return np.clip((phi(x) - phi(low)) / (phi(high) - phi(low)), 0.0, 1.0)

    return cdf


def uniform_cdf(low: float, high: float):
    return lambda x: np.clip((np.asarray(x) - low) / (high - low), 0.0, 1.0)


def assert_follows(values: np.ndarray, cdf) -> None:
    """Kolmogorov-Smirnov: the sample is consistent with the CDF (seeded, so deterministic)."""
    assert len(values) >= 200
    result = scipy.stats.kstest(values, cdf)
    assert result.pvalue > 1e-3, result


SAMPLERS = [two4two.Sampler, two4two.ColorBiasedSampler, two4two.HighVariationSampler,
            two4two.HighVariationColorBiasedSampler, two4two.MedVarSampler,
            two4two.MedVarColorSampler, two4two.MedVarSpherSampler,
            two4two.MedVarSpherColorSampler, two4two.MedVarNoArmsSampler,
            SamplerObjColorAndSpherical]


def released_study_sampler() -> SamplerObjColorAndSpherical:
    """The paper's sampler with the released datasets' config (0.15 / 0.33)."""
    return SamplerObjColorAndSpherical(**RELEASED_SAMPLER_CONFIG)


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
def test_every_attribute_is_sampled_and_valid(cls) -> None:
    scenes = draw(cls(), n=200)
    for p in scenes:
        p.check_values()
        assert all(p.get_status(a) == "sampled" for a in SAMPLED_ATTRIBUTES)
        assert p.labeling_error is False and p.fliplr is False
        assert p.original_id is None
    assert 0.4 < is_stretchy(scenes).mean() < 0.6


def test_default_sampler_distributions() -> None:
    scenes = draw(two4two.Sampler())
    stretchy = is_stretchy(scenes)
    arm = column(scenes, "arm_position")
    assert_follows(arm[~stretchy], truncnorm_cdf(0.5, 0.2, 0.0, 0.52))
    assert_follows(arm[stretchy], truncnorm_cdf(0.5, 0.2, 0.48, 1.0))
    assert_follows(column(scenes, "spherical"), scipy.stats.beta(0.3, 0.3).cdf)
    assert_follows(column(scenes, "bending"), truncnorm_cdf(0, PI / 20, -PI / 10, PI / 10))
    assert_follows(column(scenes, "obj_rotation_roll"),
                   truncnorm_cdf(0, 0.03 * PI / 4, -PI / 4, PI / 4))
    assert_follows(column(scenes, "obj_rotation_pitch"),
                   truncnorm_cdf(0, 0.3 * PI / 4, -PI / 4, PI / 4))
    assert_follows(column(scenes, "obj_rotation_yaw"), uniform_cdf(-PI, 0))
    assert_follows(column(scenes, "position_x"), uniform_cdf(-0.8, 0))
    assert_follows(column(scenes, "position_y"), uniform_cdf(-0.8, 0))
    assert_follows(column(scenes, "obj_color"), uniform_cdf(0, 1))
    assert_follows(column(scenes, "bg_color"), uniform_cdf(0.05, 0.95))
    coolwarm = matplotlib.colormaps["coolwarm"]
    for p in scenes[:20]:
        assert p.obj_color_rgba == pytest.approx(coolwarm(p.obj_color))
        assert p.bg_color_rgba == pytest.approx(coolwarm(p.bg_color))


def test_color_biased_and_high_variation_samplers() -> None:
    scenes = draw(two4two.ColorBiasedSampler())
    stretchy = is_stretchy(scenes)
    color = column(scenes, "obj_color")
    assert_follows(color[~stretchy], truncnorm_cdf(1, 0.5, 0, 1))
    assert_follows(color[stretchy], truncnorm_cdf(0, 0.5, 0, 1))
    assert_follows(column(scenes, "bg_color"), uniform_cdf(0.05, 0.85))
    seismic, binary = matplotlib.colormaps["seismic"], matplotlib.colormaps["binary"]
    for p in scenes[:20]:
        assert p.obj_color_rgba == pytest.approx(seismic(p.obj_color))
        assert p.bg_color_rgba == pytest.approx(binary(p.bg_color))
    scenes = draw(two4two.HighVariationSampler())
    assert_follows(column(scenes, "obj_rotation_roll"), uniform_cdf(-PI / 3, PI / 3))
    assert_follows(column(scenes, "obj_rotation_pitch"), uniform_cdf(-PI / 3, PI / 3))
    assert_follows(column(scenes, "obj_rotation_yaw"), uniform_cdf(-PI, 0))
    assert_follows(column(scenes, "bending"), uniform_cdf(-PI / 8, PI / 8))


def test_seeding_makes_sampling_reproducible() -> None:
    def strip(p):
        state = p.state_dict()
        del state["id"]
        return state

    sampler = SamplerObjColorAndSpherical()
    first = [strip(p) for p in draw(sampler, n=20, seed=5)]
    second = [strip(p) for p in draw(sampler, n=20, seed=5)]
    third = [strip(p) for p in draw(sampler, n=20, seed=6)]
    assert first == second and first != third


def test_fixed_class_and_resampling_statuses() -> None:
    sampler = two4two.Sampler()
    p = sampler.sample(obj_name="stretchy")
    assert p.obj_name == "stretchy" and p.get_status("obj_name") == "sampled"
    assert p.arm_position >= 0.48
    sampler.sample_obj_color(p)
    assert p.get_status("obj_color") == "resampled"
    assert p.get_status("bg_color") == "sampled"
    with pytest.raises(ValueError, match="obj_name"):
        sampler.sample(obj_name="cat")


def test_sampler_takes_constants_callables_and_rejects_bad_dicts() -> None:
    sampler = two4two.Sampler(spherical=0.25, bending=lambda: 0.1,
                              obj_color={"peaky": 0.0, "stretchy": 1.0})
    p = sampler.sample(obj_name="stretchy")
    assert (p.spherical, p.bending, p.obj_color) == (0.25, 0.1, 1.0)
    with pytest.raises(ValueError, match="keys"):
        two4two.Sampler(obj_color={"peaky": 0.0})


def test_make_interventions_clones_and_resamples_only_the_attributes() -> None:
    sampler = two4two.ColorBiasedSampler()
    originals = draw(sampler, n=50)
    clones = sampler.make_interventions(originals, ["obj_color", "bending"])
    assert [c.original_id for c in clones] == [p.id for p in originals]
    changed = {"obj_color", "obj_color_rgba", "bending", "id", "original_id",
               "_attributes_status"}
    for original, clone in zip(originals, clones, strict=True):
        assert clone.id != original.id
        for name, value in original.state_dict().items():
            if name not in changed:
                assert clone.state_dict()[name] == value, name
        assert clone.obj_color != original.obj_color and clone.bending != original.bending
        for attr in SAMPLED_ATTRIBUTES:
            want = "resampled" if attr in ("obj_color", "bending") else "sampled"
            assert clone.get_status(attr) == want
            assert original.get_status(attr) == "sampled"
    with pytest.raises(ValueError, match="wings"):
        sampler.make_interventions(originals, ["wings"])


def test_intervention_removes_the_color_bias() -> None:
    sampler = two4two.ColorBiasedSampler()
    scenes = draw(sampler)
    y = is_stretchy(scenes)
    biased_auc = roc_auc_score(y, -column(scenes, "obj_color"))
    np.random.seed(1)
    intervened = sampler.make_interventions(scenes, ["obj_color"])
    intervened_auc = roc_auc_score(y, -column(intervened, "obj_color"))
    # exact AUC = P(colour_peaky > colour_stretchy), by quadrature of the two densities
    x = np.linspace(0, 1, 20001)
    peaky_cdf, stretchy_cdf = truncnorm_cdf(1, 0.5, 0, 1), truncnorm_cdf(0, 0.5, 0, 1)
    stretchy_pdf = np.gradient(stretchy_cdf(x), x)
    exact_auc = np.trapz(stretchy_pdf * (1 - peaky_cdf(x)), x)
    assert exact_auc > 0.75
    assert biased_auc == pytest.approx(exact_auc, abs=0.04)
    assert abs(intervened_auc - 0.5) < 0.05  # null s.e. of the AUC at n=2000 is 0.013
    np.random.seed(2)
    unbiased = [sampler.sample_unbiased() for _ in range(N)]
    y_unbiased = is_stretchy(unbiased)
    assert abs(roc_auc_score(y_unbiased, column(unbiased, "obj_color")) - 0.5) < 0.05
    assert roc_auc_score(y_unbiased, column(unbiased, "arm_position")) > 0.95
    assert all(p.get_status(a) == "sampled" for p in unbiased for a in SAMPLED_ATTRIBUTES)


# --------------------------------------------------------------------------- study sampler


def test_study_sampler_distributions() -> None:
    scenes = draw(released_study_sampler())
    stretchy = is_stretchy(scenes)
    arm = column(scenes, "arm_position")
    assert_follows(arm[~stretchy], uniform_cdf(0, 0.52))
    assert_follows(arm[stretchy], uniform_cdf(0.48, 1))
    assert_follows(column(scenes, "bg_color"), uniform_cdf(0, 1))
    assert_follows(column(scenes, "obj_rotation_pitch"),
                   truncnorm_cdf(0, 0.5 * PI / 4, -PI / 6, PI / 6))
    assert_follows(column(scenes, "obj_rotation_yaw"), uniform_cdf(-PI, 0))
    assert_follows(column(scenes, "obj_rotation_roll"),
                   truncnorm_cdf(0, 0.03 * PI / 4, -PI / 4, PI / 4))
    # spherical: marginally Beta(0.3, 0.3) where the arms do not truncate it
    spherical = column(scenes, "spherical")
    middle = (arm >= 0.45) & (arm <= 0.55)
    assert_follows(spherical[middle], scipy.stats.beta(0.3, 0.3).cdf)
    # arms < 0.45: spherical > 0.5 only from the untruncated draws (p = 0.33 * 1/2)
    low = arm < 0.45
    assert np.mean(spherical[low] > 0.5) == pytest.approx(0.33 * 0.5, abs=0.035)
    assert np.mean(spherical[arm > 0.55] < 0.5) == pytest.approx(0.33 * 0.5, abs=0.035)
    coolwarm = matplotlib.colormaps["coolwarm"]
    for p in scenes[:50]:
        v = p.obj_color
        assert p.obj_color_rgba == pytest.approx(coolwarm(v if v <= 0.5 else 0.9 * (v - 0.5) + 0.5))
        assert p.bg_color_rgba == pytest.approx(coolwarm(p.bg_color))


def test_study_sampler_obj_color_formula() -> None:
    """At arm 0.5 a stretchy's colour is 1 - U(0, 0.25) (else uniform w.p. 0.15)."""
    sampler = released_study_sampler()
    np.random.seed(3)
    colors = []
    for _ in range(N):
        p = two4two.SceneParameters(obj_name="stretchy", arm_position=0.5)
        sampler.sample_obj_color(p)
        colors.append(p.obj_color)
    colors = np.array(colors)
    # P(colour < 0.75) = 0.15 * 0.75; within [0.75, 1] the density is flat
    assert np.mean(colors < 0.75) == pytest.approx(0.15 * 0.75, abs=0.025)
    assert_follows(colors[colors >= 0.75], uniform_cdf(0.75, 1.0))
    # arm 0.7: range [0, clip(0.25 + 2.5 * 0.2)] = [0, 0.75] -> colour in [0.25, 1]
    p = two4two.SceneParameters(obj_name="stretchy", arm_position=0.7)
    values = []
    for _ in range(500):
        sampler.sample_obj_color(p)
        values.append(p.obj_color)
    assert np.mean(np.array(values) < 0.25) == pytest.approx(0.15 * 0.25, abs=0.025)


def test_study_sampler_obj_color_predicts_the_class_without_intervention() -> None:
    sampler = SamplerObjColorAndSpherical()
    scenes = draw(sampler)
    y = is_stretchy(scenes)
    assert roc_auc_score(y, column(scenes, "obj_color")) > 0.65
    # at the ambiguous arm position 0.5 the colour is the only cue ...
    np.random.seed(4)
    ambiguous = [two4two.SceneParameters(obj_name=str(np.random.choice(["peaky", "stretchy"])),
                                         arm_position=0.5) for _ in range(N)]
    y = is_stretchy(ambiguous)
    for p in ambiguous:
        sampler.sample_obj_color(p)
    assert roc_auc_score(y, column(ambiguous, "obj_color")) > 0.85
    # ... and under intervention the class is read from the arms (a coin at 0.5)
    intervened = sampler.make_interventions(ambiguous, ["obj_color"])
    assert abs(roc_auc_score(y, column(intervened, "obj_color")) - 0.5) < 0.05


def test_study_sampler_spherical_is_independent_under_intervention() -> None:
    sampler = SamplerObjColorAndSpherical()
    scenes = draw(sampler)
    arm = column(scenes, "arm_position")
    assert np.corrcoef(arm, column(scenes, "spherical"))[0, 1] > 0.4
    np.random.seed(5)
    intervened = sampler.make_interventions(scenes, ["spherical"])
    assert abs(np.corrcoef(arm, column(intervened, "spherical"))[0, 1]) < 0.07
    assert abs(roc_auc_score(is_stretchy(scenes), column(intervened, "spherical")) - 0.5) < 0.05
    assert_follows(column(intervened, "spherical"), scipy.stats.beta(0.3, 0.3).cdf)


def test_study_sampler_unbiased_mode() -> None:
    sampler = SamplerObjColorAndSpherical()
    np.random.seed(6)
    scenes = [sampler.sample_unbiased() for _ in range(N)]
    y = is_stretchy(scenes)
    arm = column(scenes, "arm_position")
    assert roc_auc_score(y, arm) > 0.95
    assert abs(np.corrcoef(arm, column(scenes, "spherical"))[0, 1]) < 0.07
    # obj_color depends on the class only through the arm position: at fixed arm
    # position (outside the overlap) it is independent of the label
    peaky_side = arm < 0.3
    assert np.all(~y[peaky_side])
    assert all(p.get_status(a) == "sampled" for p in scenes for a in SAMPLING_ORDER)


def test_attribute_orders_are_tied_and_unchanged() -> None:
    """The draw order fixes the random streams (the scenes of a seed); the attribute order
    fixes dataset columns and the PyTorch label order. Neither may change by accident."""
    from two4two.pytorch import ATTRIBUTE_NAMES

    fields = [f.name for f in dataclasses.fields(two4two.SceneParameters)]
    assert list(SAMPLED_ATTRIBUTES) == [name for name in fields if name in SAMPLED_ATTRIBUTES]
    assert ATTRIBUTE_NAMES == SAMPLED_ATTRIBUTES
    assert SAMPLING_ORDER == (
        "obj_name", "arm_position", "labeling_error", "spherical", "bending",
        "obj_rotation_roll", "obj_rotation_pitch", "obj_rotation_yaw", "fliplr", "position_x",
        "position_y", "obj_color", "bg_color")
    assert sorted(SAMPLING_ORDER) == sorted(SAMPLED_ATTRIBUTES)


def test_study_sampler_config_is_validated() -> None:
    with pytest.raises(ValueError, match="obj_color_uniform_prob"):
        SamplerObjColorAndSpherical(obj_color_uniform_prob=1.5)
    with pytest.raises(ValueError, match="obj_color_slope"):
        SamplerObjColorAndSpherical(obj_color_slope=float("nan"))
    with pytest.raises(TypeError):
        SamplerObjColorAndSpherical(obj_colour_slope=2.0)  # type: ignore[call-arg]


def test_truncated_normal_is_a_scipy_truncnorm_with_the_closed_form_mean() -> None:
    from two4two.utils import truncated_normal

    dist = truncated_normal(0.5, 0.2, 0.0, 0.52)
    assert dist.dist.name == "truncnorm"
    assert dist.support() == pytest.approx((0.0, 0.52))
    a, b = (0.0 - 0.5) / 0.2, (0.52 - 0.5) / 0.2
    norm = scipy.stats.norm
    mean = 0.5 + 0.2 * (norm.pdf(a) - norm.pdf(b)) / (norm.cdf(b) - norm.cdf(a))
    assert dist.mean() == pytest.approx(mean, rel=1e-9)
    with pytest.raises(ValueError, match="lower < upper"):
        truncated_normal(0, 1, 1, 0)
