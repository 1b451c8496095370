"""Bits per dimension against scipy and a closed form, the heads' BCE with label noise,
and the linear heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dubfiv import config as cfg
from dubfiv.flow import build_flow
from dubfiv.heads import LinearHead, build_heads, check_heads
from dubfiv.losses import bits_per_dim, head_bce, noisy_labels


def test_bits_per_dim_equals_scipy_computation() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64)
    zs = {5: torch.randn(3, 8, 2, 2, generator=g, dtype=torch.float64),
          9: 2 * torch.randn(3, 4, 4, 1, generator=g, dtype=torch.float64)}
    logdet = torch.randn(3, generator=g, dtype=torch.float64) * 10
    n_dims = 16 + 32 + 16
    bpd = bits_per_dim(h, zs, logdet, n_dims)
    for b in range(3):
        values = np.concatenate([h[b].numpy().ravel()] + [z[b].numpy().ravel() for z in
                                                          zs.values()])
        log_p = stats.norm.logpdf(values).sum() + logdet[b].item()
        expected = (-log_p + n_dims * np.log(256)) / (n_dims * np.log(2))
        assert bpd[b].item() == pytest.approx(expected, rel=1e-12)
    # any iterable of latents works the same as the mapping
    torch.testing.assert_close(bits_per_dim(h, list(zs.values()), logdet, n_dims), bpd)
    with pytest.raises(ValueError, match="dimensions"):
        bits_per_dim(h, zs, logdet, n_dims + 1)


def test_bits_per_dim_of_an_identity_flow_on_gaussian_data_matches_closed_form() -> None:
    """Flow = final ActNorm (s = 1/sigma, b = 0) + identity 1x1 conv on N(0, sigma^2) data.

    Then h = x / sigma ~ N(0, 1) and the expected NLL per dimension is the entropy
    of N(0, sigma^2): 0.5 * log(2 pi e sigma^2), plus log(256) for the dequantisation.
    """
    torch.manual_seed(0)
    sigma = 0.2
    flow = build_flow(cfg.ModelConfig(layers=[], image_size=16, in_channels=3)).double()
    actnorm, invconv = flow.layers
    with torch.no_grad():
        actnorm.s.fill_(1 / sigma)
        actnorm.b.zero_()
        invconv.p.copy_(torch.eye(3))
        invconv.l.zero_()
        invconv.u.copy_(torch.eye(3))
    x = sigma * torch.randn(512, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        out = flow(x)
    torch.testing.assert_close(out.h, x / sigma)
    n_dims = 3 * 16 * 16
    bpd = bits_per_dim(out.h, out.zs, out.logdet, n_dims)
    closed_form = (0.5 * math.log(2 * math.pi * math.e * sigma**2) + math.log(256)) / math.log(2)
    assert bpd.mean().item() == pytest.approx(closed_form, abs=2e-3)
    # per sample exactly: NLL of x under N(0, sigma^2) (independent of the flow)
    direct = -stats.norm.logpdf(x.numpy(), scale=sigma).reshape(512, -1).sum(1)
    expected = (direct + n_dims * np.log(256)) / (n_dims * np.log(2))
    np.testing.assert_allclose(bpd.numpy(), expected, rtol=1e-12)


def test_head_bce_without_noise_is_the_formula() -> None:
    logits = torch.tensor([-2.0, 0.5, 3.0, -0.1], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    p = 1 / (1 + np.exp(-logits.numpy()))
    y = labels.numpy()
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert head_bce(logits, labels, 0.0).item() == pytest.approx(expected, rel=1e-12)


def test_label_noise_replaces_labels_by_random_bits() -> None:
    n = 200_000
    labels = torch.ones(n)
    for noise in (0.1, 0.5, 1.0):
        noisy = noisy_labels(labels, noise, torch.Generator().manual_seed(1))
        # a label changes when it is replaced (prob noise) by the other bit (prob 1/2)
        flipped = (noisy != labels).float().mean().item()
        assert flipped == pytest.approx(noise / 2, abs=4 * math.sqrt(0.25 / n))
        assert set(noisy.unique().tolist()) <= {0.0, 1.0}
    a = noisy_labels(labels[:100], 0.3, torch.Generator().manual_seed(7))
    b = noisy_labels(labels[:100], 0.3, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(noisy_labels(labels[:10], 0.0), labels[:10])
    with pytest.raises(ValueError, match="label_noise"):
        noisy_labels(labels, 1.5)
    # the loss with noise is the BCE against the noisy labels
    logits = torch.randn(100)
    noisy = noisy_labels(labels[:100], 0.3, torch.Generator().manual_seed(3))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, noisy)
    loss = head_bce(logits, labels[:100], 0.3, torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss, expected)


def test_linear_head_is_w_dot_flat_h_plus_b() -> None:
    head = LinearHead(12, after_layer=5)
    assert set(head.state_dict()) == {"fc.weight", "fc.bias"}
    assert head.fc.weight.shape == (1, 12) and head.fc.bias.shape == (1,)
    h = torch.randn(4, 3, 2, 2)
    expected = h.reshape(4, 12) @ head.fc.weight[0] + head.fc.bias
    torch.testing.assert_close(head(h), expected)
    with pytest.raises(ValueError, match="12 features"):
        head(torch.randn(4, 3, 2, 3))


def test_build_heads_checks_and_infers_in_features() -> None:
    model = cfg.ModelConfig(layers=[cfg.FadeOutAndPool(channels_to_keep="no_fade_out"),
                                    cfg.FlowBlocks(n_blocks=1, block_channels=4)], image_size=4)
    heads = build_heads([cfg.ClassifierConfig(after_layer=2, in_channels=0)], model)
    assert heads[0].in_features == 12 * 2 * 2 and heads[0].after_layer == 2
    assert build_heads([cfg.ClassifierConfig(after_layer=0, in_channels=7)])[0].in_features == 7
    with pytest.raises(cfg.ConfigError, match=r"in_channels = 48"):
        check_heads([cfg.ClassifierConfig(after_layer=2, in_channels=40)], model)
    with pytest.raises(cfg.ConfigError, match="after_layer"):
        check_heads([cfg.ClassifierConfig(after_layer=99, in_channels=48)], model)
