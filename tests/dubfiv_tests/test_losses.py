"""Bits per dimension against scipy, a closed form and an independent float64
computation (the paper's convention), the heads' BCE, and the linear heads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from dubfiv import config as cfg
from dubfiv import data
from dubfiv.flow import build_flow
from dubfiv.heads import LinearHead, build_heads, check_heads
from dubfiv.losses import PIXEL_BIN_WIDTH, PIXEL_LEVELS, bits_per_dim, head_bce
from dubfiv.train.model import FlowWithHeads


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
        expected = (-log_p + n_dims * np.log(255)) / (n_dims * np.log(2))
        assert bpd[b].item() == pytest.approx(expected, rel=1e-12)
    # any iterable of latents works the same as the mapping
    torch.testing.assert_close(bits_per_dim(h, list(zs.values()), logdet, n_dims), bpd)
    with pytest.raises(ValueError, match="dimensions"):
        bits_per_dim(h, zs, logdet, n_dims + 1)
    with pytest.raises(ValueError, match="bin_width"):
        bits_per_dim(h, zs, logdet, n_dims, bin_width=0.0)


def test_bits_per_dim_of_an_identity_flow_on_gaussian_data_matches_closed_form() -> None:
    """Flow = final ActNorm (s = 1/sigma, b = 0) + identity 1x1 conv on N(0, sigma^2) data.

    Then h = x / sigma ~ N(0, 1) and the expected NLL per dimension is the entropy
    of N(0, sigma^2): 0.5 * log(2 pi e sigma^2), plus log(255) for the 1/255 bins.
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
    closed_form = (0.5 * math.log(2 * math.pi * math.e * sigma**2) + math.log(255)) / math.log(2)
    assert bpd.mean().item() == pytest.approx(closed_form, abs=2e-3)
    # per sample exactly: NLL of x under N(0, sigma^2) (independent of the flow)
    direct = -stats.norm.logpdf(x.numpy(), scale=sigma).reshape(512, -1).sum(1)
    expected = (direct + n_dims * np.log(255)) / (n_dims * np.log(2))
    np.testing.assert_allclose(bpd.numpy(), expected, rtol=1e-12)


def test_head_bce_without_noise_is_the_formula() -> None:
    logits = torch.tensor([-2.0, 0.5, 3.0, -0.1], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    p = 1 / (1 + np.exp(-logits.numpy()))
    y = labels.numpy()
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert head_bce(logits, labels).item() == pytest.approx(expected, rel=1e-12)


def test_the_bin_width_follows_the_data_scaling() -> None:
    """``data.to_unit`` maps 8-bit values ``k`` to ``k / PIXEL_LEVELS``: adjacent values
    lie ``PIXEL_BIN_WIDTH`` apart, the bin whose probability bits/dim reports."""
    k = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    unit = data.to_unit(k).double()
    torch.testing.assert_close(unit, k.double() / PIXEL_LEVELS, rtol=1e-7, atol=0)
    assert unit.max().item() == 1.0
    assert PIXEL_BIN_WIDTH == 1 / PIXEL_LEVELS == pytest.approx(1 / 255, rel=1e-15)


def test_the_two_conventions_differ_by_exactly_log2_256_over_255() -> None:
    """Bins of 1/256 (Glow's scaling) instead of the data's 1/255 add log2(256/255) =
    0.00565 bits/dim to every sample, whatever the latents."""
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 6, 2, 2, generator=g, dtype=torch.float64)
    zs = [torch.randn(5, 24, 2, 2, generator=g, dtype=torch.float64)]
    logdet = 50 * torch.randn(5, generator=g, dtype=torch.float64)
    ours = bits_per_dim(h, zs, logdet, 120)
    other = bits_per_dim(h, zs, logdet, 120, bin_width=1 / 256)
    np.testing.assert_allclose((other - ours).numpy(), math.log2(256 / 255), rtol=0, atol=1e-12)
    assert math.log2(256 / 255) == pytest.approx(0.00565, abs=5e-6)


def _flow_config() -> cfg.ModelConfig:
    """4x4 images, 48 dimensions: space-to-depth, couplings, a split, 1x1-kernel nets."""
    return cfg.ModelConfig(layers=[
        cfg.FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
        cfg.FlowBlocks(n_blocks=2, block_channels=8),
        cfg.FadeOutAndPool(channels_to_keep="half", pool=2),
        cfg.FlowBlocks(n_blocks=1, block_channels=8, conv_1x1_kernel=True),
    ], image_size=4, in_channels=3)


def test_a_model_with_given_weights_reports_the_papers_bits_per_dim(tmp_path: Path) -> None:
    """The trained module's bits/dim on dequantised 8-bit images equals an independent
    float64 computation with the paper's convention: ``-log p(x) / (D ln 2) + log2(255)``
    with ``log p(x) = sum log N(f(x)) + log|det df/dx|``, the Jacobian of the whole
    flow (all latents and the output, ``D x D``) taken by autograd, not from the
    layers' log-determinant formulas."""
    torch.manual_seed(0)
    model = _flow_config()
    images = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    x = data.dequantize(data.to_unit(images),
                        data.dequantization_noise(7, 3, images.shape)).double()
    source = build_flow(model).double()
    source.data_init(x)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # trained-like weights: non-zero last convs, perturbed factors
        for p in source.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    flow = build_flow(model).double()
    flow.load_state_dict(torch.load(tmp_path / "weights.pt"))
    module = FlowWithHeads(flow, torch.nn.ModuleList(), [])
    with torch.no_grad():
        reported, _ = module(x)

    n_dims = 3 * 4 * 4

    def all_latents(v: torch.Tensor) -> torch.Tensor:
        out = flow(v.view(1, 3, 4, 4))
        return torch.cat([z.flatten() for z in out.zs.values()] + [out.h.flatten()])

    for b in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(all_latents, x[b].flatten())
        assert jac.shape == (n_dims, n_dims)
        _, log_abs_det = np.linalg.slogdet(jac.numpy())
        with torch.no_grad():
            f = all_latents(x[b].flatten()).numpy()
        log_p = stats.norm.logpdf(f).sum() + log_abs_det
        paper = -log_p / (n_dims * math.log(2)) + math.log2(255)
        assert reported[b].item() == pytest.approx(paper, rel=1e-10)


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
