"""Concepts: factorisations, JVP importance, ranking, probe and the end-to-end report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from dubfiv.explain.concept_report import ConceptInputs, explain_concepts
from dubfiv.explain.concepts import (
    NoConceptLayerError,
    collect_activations,
    concept_derivatives,
    concept_layer,
    concept_probe,
    explained_variance,
    fit_concepts,
    random_basis_explained_variance,
    rank_concepts,
    to_samples,
)
from dubfiv.flow import describe_layers


def _structured_acts(n: int = 60, c: int = 16, k: int = 6, seed: int = 0) -> np.ndarray:
    """Activations ``[n, c, 4, 4]`` = non-negative sparse maps x signed directions + noise."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(k, c))
    maps = rng.exponential(size=(n * 16, k)) * (rng.uniform(size=(n * 16, k)) < 0.3)
    samples = maps @ directions + 0.05 * rng.normal(size=(n * 16, c))
    return samples.reshape(n, 4, 4, c).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("method", ["nmf", "pca"])
def test_concepts_reconstruct_better_than_chance(method: str) -> None:
    acts = _structured_acts()
    basis = fit_concepts(acts, method, n_concepts=6, seed=0)
    samples = to_samples(acts)
    fitted = explained_variance(samples, basis.reconstruct(samples))
    chance = random_basis_explained_variance(samples, 6, seed=0)
    shuffled_maps = np.random.default_rng(1).permutation(basis.sample_maps(samples))
    shuffled = explained_variance(samples, basis.mean + shuffled_maps @ basis.directions)
    assert fitted > 0.9
    assert fitted > chance + 0.3 and fitted > shuffled + 0.5
    np.testing.assert_allclose(np.linalg.norm(basis.directions, axis=1), 1.0, rtol=1e-12)
    maps = basis.maps(acts)
    assert maps.shape == (60, 6, 4, 4)
    # maps are the per-position scores, reshaped in (N, h, w) order
    np.testing.assert_allclose(maps.transpose(0, 2, 3, 1).reshape(-1, 6),
                               basis.sample_maps(samples), rtol=1e-10, atol=1e-12)


def test_nmf_factors_are_non_negative_and_directions_are_their_signed_difference() -> None:
    acts = _structured_acts()
    basis = fit_concepts(acts, "nmf", n_concepts=6, seed=0)
    c = acts.shape[1]
    assert (basis.components >= 0).all()
    assert (basis.maps(acts) >= 0).all()
    np.testing.assert_allclose(basis.directions, basis.components[:, :c] - basis.components[:, c:])


def test_pca_directions_are_the_top_covariance_eigenvectors() -> None:
    acts = _structured_acts()
    basis = fit_concepts(acts, "pca", n_concepts=4, seed=0)
    samples = to_samples(acts)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(samples.T))
    top = eigenvectors[:, ::-1][:, :4].T
    np.testing.assert_allclose(np.abs(basis.directions @ top.T), np.eye(4), atol=1e-6)
    expected = 1 - eigenvalues[:-4].sum() / eigenvalues.sum()
    assert explained_variance(samples, basis.reconstruct(samples)) == pytest.approx(expected)
    scores = basis.sample_maps(samples)  # oriented: non-negative skew
    assert ((scores ** 3).sum(0) >= 0).all()


def test_jvp_importance_equals_finite_differences_and_autograd(tiny_model: Callable) -> None:
    flow, head, images, _ = tiny_model(torch.float64)
    layer = 5
    acts, logits = collect_activations(flow, head, layer, [images[:5], images[5:9]])
    acts = flow(images[:9], 0, layer + 1).h.detach()  # float64 (collect returns float32)
    directions = np.random.default_rng(0).normal(size=(3, acts.shape[1]))
    got_logits, derivs = concept_derivatives(flow, head, layer, acts, directions, batch_size=4)
    np.testing.assert_allclose(got_logits, logits, rtol=0, atol=1e-6)

    def logit(a: torch.Tensor) -> torch.Tensor:
        return head(flow(a, layer + 1, head.after_layer + 1).h)

    a = acts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(logit(a).sum(), a)
    eps = 1e-5
    for k, d in enumerate(directions):
        tangent = torch.from_numpy(d)[None, :, None, None].expand_as(acts)
        np.testing.assert_allclose(derivs[:, k], (grad * tangent).sum((1, 2, 3)).numpy(),
                                   rtol=1e-9, atol=1e-10)
        with torch.no_grad():
            fd = (logit(acts + eps * tangent) - logit(acts - eps * tangent)) / (2 * eps)
        np.testing.assert_allclose(derivs[:, k], fd.numpy(), rtol=1e-6, atol=1e-8)


def test_rank_concepts_is_the_pearson_correlation_of_contributions() -> None:
    rng = np.random.default_rng(0)
    pooled, derivs, logits = rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), rng.normal(size=50)
    derivs[:, 3] = 0.0  # a concept that never contributes
    contribution, corr = rank_concepts(pooled, derivs, logits)
    np.testing.assert_allclose(contribution, pooled * derivs)
    for k in range(3):
        assert corr[k] == pytest.approx(np.corrcoef(contribution[:, k], logits)[0, 1])
    assert corr[3] == 0.0


def test_concept_layer_is_the_last_1x1_conv_at_a_resolution(tiny_model: Callable) -> None:
    *_, config = tiny_model(torch.float64)
    infos = describe_layers(config)
    assert concept_layer(infos, head_layer=11, resolution=8) == 5
    assert concept_layer(infos, head_layer=11, resolution=4) == 10
    assert concept_layer(infos, head_layer=16, resolution=4) == 13
    with pytest.raises(NoConceptLayerError, match=r"resolutions available: \[4, 8\]"):
        concept_layer(infos, head_layer=11, resolution=2)


def test_probe_accuracy_reflects_how_informative_the_scores_are() -> None:
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores = rng.normal(size=(n, 5))
        logits = 3 * scores[:, 0] - 2 * scores[:, 1]
        return scores, (logits > 0).astype(float), logits

    report = concept_probe(split(300), {"validation": split(200)})
    assert report["validation"]["label_accuracy"] > 0.95
    assert report["validation"]["logit_r2"] > 0.99
    noise = rng.normal(size=(200, 5))
    report = concept_probe(split(300), {"validation": (noise, split(200)[1], split(200)[2])})
    assert report["validation"]["label_accuracy"] < 0.7


def test_report_end_to_end_on_a_tiny_model(tiny_model: Callable, tmp_path: Path) -> None:
    flow, head, images, _ = tiny_model(torch.float64)
    layer = 5

    def inputs(x: torch.Tensor, offset: int) -> ConceptInputs:
        acts, logits = collect_activations(flow, head, layer, [x])
        n = len(x)
        return ConceptInputs(acts, logits, (logits > 0).astype(float),
                             np.arange(offset, offset + n), [f"img{offset + i}" for i in range(n)])

    fit, val = inputs(images[:16], 0), inputs(images[8:], 100)
    report = explain_concepts(flow, head, layer, fit, {"validation": val}, "validation",
                              lambda idx: images[np.asarray(idx) - 92].float(),
                              method="nmf", n_concepts=6, n_per_sign=2, n_images=3)
    assert report.basis.directions.shape == (6, 12)
    assert 0 < report.fit_explained_variance <= 1 and 0 < report.random_explained_variance < 1
    assert 1 <= len(report.shown) <= 4
    pooled = report.basis.maps(val.acts).mean(axis=(2, 3))
    for s in report.shown:
        k = s["concept"]
        assert s["sign"] == np.sign(report.correlation[k])
        np.testing.assert_array_equal(s["positions"], np.argsort(-pooled[:, k])[:3])
    assert report.images.shape == (len(report.shown), 3, 3, 16, 16)
    assert report.outlines.shape == (len(report.shown), 3, 16, 16)
    paths = report.save(tmp_path)
    record = json.loads(paths["json"].read_text())
    assert record["method"] == "nmf" and len(record["directions"]) == 6
    assert set(record["probe"]) == {"train", "validation"}
    assert paths["png"].stat().st_size > 1000
