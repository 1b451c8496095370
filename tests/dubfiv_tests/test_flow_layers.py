"""Single invertible layers: exact inverses, log-determinants against autograd Jacobians,
initialisation, state-dict layout, the 1x1 conv's weight cache, the space-to-depth order,
and the training shortcuts (ActNorm folded into the 1x1 conv, channels-last coupling nets)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dubfiv.flow import (
    ActNorm,
    AffineCoupling,
    CouplingNet,
    InvConv1x1,
    SpaceToDepth,
    Split,
)


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial, well-conditioned random parameters (not the identity init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if leaf == "s":  # ActNorm scale: magnitude in [0.5, 1.5], random sign
                sign = torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0)
                p.copy_(sign * (0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype)))
            elif leaf == "u":
                p.copy_(0.3 * noise)
                diag = 0.5 + torch.rand(p.shape[0], generator=g, dtype=p.dtype)
                sign = torch.where(torch.rand(p.shape[0], generator=g) < 0.5, -1.0, 1.0)
                p.diagonal().copy_(sign * diag)
            elif leaf == "weight" and p.dim() == 4:
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.3 * noise)
    return module


def make_layer(kind: str, channels: int) -> nn.Module:
    if kind == "actnorm":
        return ActNorm(channels)
    if kind == "invconv":
        return InvConv1x1(channels)
    if kind == "coupling3x3":
        return AffineCoupling(channels, width=6)
    if kind == "coupling1x1":
        return AffineCoupling(channels, width=6, conv_1x1_kernel=True)
    if kind == "additive":
        return AffineCoupling(channels, width=6, coupling="additive")
    if kind == "space_to_depth":
        return SpaceToDepth()
    raise ValueError(kind)


LAYER_KINDS = ["actnorm", "invconv", "coupling3x3", "coupling1x1", "additive", "space_to_depth"]


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("channels", [4, 5])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_inverse_of_forward_is_identity(kind: str, channels: int, dtype: torch.dtype,
                                        tol: float) -> None:
    torch.manual_seed(0)
    layer = randomize_(make_layer(kind, channels)).to(dtype)
    x = torch.randn(3, channels, 6, 8, dtype=dtype)
    y, logdet = layer(x)
    assert logdet.shape == (3,) and logdet.dtype == dtype
    if kind != "space_to_depth":
        assert not torch.allclose(y, x)  # a non-trivial map
    torch.testing.assert_close(layer.inverse(y), x, rtol=0, atol=tol)


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("channels", [4, 3])
def test_logdet_equals_autograd_jacobian(kind: str, channels: int) -> None:
    torch.manual_seed(1)
    layer = randomize_(make_layer(kind, channels), seed=channels).double()
    x = torch.randn(2, channels, 4, 4, dtype=torch.float64)
    _, logdet = layer(x)
    for b in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], x[b : b + 1])
        jac = jac.reshape(x[b].numel(), x[b].numel())
        sign, expected = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(logdet[b], expected, rtol=1e-10, atol=1e-10)


def test_split_is_a_volume_preserving_partition() -> None:
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    half = Split("half")
    kept, z = half(x)
    assert kept.shape == (2, 2, 3, 3) and z.shape == (2, 3, 3, 3)  # C//2 | C - C//2
    assert torch.equal(kept, x[:, :2]) and torch.equal(z, x[:, 2:])
    assert torch.equal(half.inverse(kept, z), x)
    assert half.output_shape((5, 3, 3)) == (2, 3, 3) and half.latent_shape((5, 3, 3)) == (3, 3, 3)
    kept, z = Split(4)(x)
    assert kept.shape[1] == 4 and z.shape[1] == 1
    for bad in (0, 5, 7):
        with pytest.raises(ValueError, match="keep"):
            Split(bad)(x)


# --------------------------------------------------------------------------- ActNorm


def test_actnorm_data_init_gives_zero_mean_unit_std() -> None:
    torch.manual_seed(0)
    x = 3.0 + 2.5 * torch.randn(16, 6, 5, 5) * torch.arange(1, 7).view(1, 6, 1, 1)
    layer = ActNorm(6)
    assert not layer.initialized
    layer.data_init(x)
    assert layer.initialized
    y, _ = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(6),
                               atol=1e-5, rtol=0)


def test_actnorm_state_dict_layout_and_loaded_counts_as_initialised() -> None:
    layer = ActNorm(4)
    state = layer.state_dict()
    assert set(state) == {"s", "b"}
    assert state["s"].shape == state["b"].shape == (1, 4, 1, 1)
    fresh = ActNorm(4)
    fresh.load_state_dict({"s": torch.full((1, 4, 1, 1), 2.0), "b": torch.ones(1, 4, 1, 1)})
    assert fresh.initialized
    x = torch.randn(2, 4, 3, 3)
    y, logdet = fresh(x)
    torch.testing.assert_close(y, 2 * x + 1)
    torch.testing.assert_close(logdet, torch.full((2,), 9 * 4 * math.log(2.0)))


def test_coupling_data_init_normalises_hidden_activations() -> None:
    torch.manual_seed(0)
    layer = AffineCoupling(6, width=8)
    x = 4 * torch.randn(10, 6, 5, 5) + 1
    layer.data_init(x)
    net = layer._block
    h1 = net.actnorm1.affine(net.conv1(x[:, :3]))
    h2 = net.actnorm2.affine(net.conv2(F.relu(h1)))
    for h in (h1, h2):
        torch.testing.assert_close(h.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5, rtol=0)
        torch.testing.assert_close(h.std(dim=(0, 2, 3), unbiased=False), torch.ones(8),
                                   atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- 1x1 conv


def test_invconv_weight_from_lu_and_orthogonal_init() -> None:
    torch.manual_seed(0)
    layer = InvConv1x1(7)
    assert set(layer.state_dict()) == {"p", "l", "u", "l_mask", "u_mask"}
    assert {n for n, _ in layer.named_parameters()} == {"l", "u"}
    w = layer.weight().double()
    torch.testing.assert_close(w @ w.T, torch.eye(7, dtype=torch.float64), atol=1e-5, rtol=0)
    randomize_(layer)
    eye = torch.eye(7)
    by_hand = layer.p @ (layer.l * layer.l_mask + eye) @ (layer.u * layer.u_mask)
    torch.testing.assert_close(layer.weight(), by_hand)
    x = torch.randn(2, 7, 3, 4)
    y, logdet = layer(x)
    torch.testing.assert_close(y, torch.einsum("oc,bchw->bohw", by_hand, x), atol=1e-6, rtol=1e-5)
    expected = 12 * torch.linalg.slogdet(by_hand.double())[1]
    torch.testing.assert_close(logdet.double(), expected.expand(2), atol=1e-4, rtol=1e-6)


def test_invconv_eval_cache_is_reused_and_invalidated() -> None:
    torch.manual_seed(0)
    layer = randomize_(InvConv1x1(5))
    layer.eval()
    x = torch.randn(2, 5, 3, 3)
    with torch.no_grad():
        w1 = layer.weight()
        assert layer.weight() is w1  # cached
        w_inv = layer.inverse_weight()
        assert layer.inverse_weight() is w_inv
        torch.testing.assert_close(w1 @ w_inv, torch.eye(5), atol=1e-5, rtol=0)
        layer.u.mul_(2.0)  # in-place change (like an optimiser step)
        w2 = layer.weight()
        assert w2 is not w1
        torch.testing.assert_close(w2, 2 * w1)
        torch.testing.assert_close(layer.inverse(layer(x)[0]), x, atol=1e-5, rtol=0)
    # with gradients enabled the weight is recomputed so that l and u get gradients
    y, _ = layer(x)
    y.sum().backward()
    assert layer.u.grad is not None and layer.l.grad is not None
    layer.train()
    assert layer._cache is None


def test_invconv_load_state_dict_invalidates_cache() -> None:
    torch.manual_seed(0)
    a, b = randomize_(InvConv1x1(4), seed=1), randomize_(InvConv1x1(4), seed=2)
    a.eval()
    with torch.no_grad():
        a.weight()
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a.weight(), b.weight())


# --------------------------------------------------------------------------- coupling


@pytest.mark.parametrize("conv_1x1_kernel", [False, True])
def test_coupling_matches_the_formula(conv_1x1_kernel: bool) -> None:
    torch.manual_seed(0)
    layer = randomize_(AffineCoupling(6, width=5, conv_1x1_kernel=conv_1x1_kernel)).double()
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    out = layer._block(x[:, :3])
    s, t = out[:, :3], out[:, 3:]
    scale = 1 / (1 + torch.exp(-s)) + 0.5
    y, logdet = layer(x)
    torch.testing.assert_close(y[:, :3], x[:, :3])
    torch.testing.assert_close(y[:, 3:], scale * x[:, 3:] + t)
    torch.testing.assert_close(logdet, torch.log(scale).sum(dim=(1, 2, 3)))


def test_coupling_starts_as_identity_and_has_the_released_keys() -> None:
    torch.manual_seed(0)
    layer = AffineCoupling(6, width=8)
    x = torch.randn(2, 6, 5, 5)
    layer.data_init(x)
    y, logdet = layer(x)
    torch.testing.assert_close(y, x, atol=0, rtol=0)
    torch.testing.assert_close(logdet, torch.zeros(2), atol=1e-6, rtol=0)
    assert set(layer.state_dict()) == {
        f"_block.{m}.{p}" for m in ("conv1", "conv2", "conv3") for p in ("weight", "bias")
    } | {f"_block.actnorm{n}.{p}" for n in (1, 2) for p in ("s", "b")}
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes["_block.conv1.weight"] == (8, 3, 3, 3)
    assert shapes["_block.conv2.weight"] == (8, 8, 1, 1)
    assert shapes["_block.conv3.weight"] == (6, 8, 3, 3)


def test_coupling_1x1_net_last_conv_is_one_hundredth_of_default_init() -> None:
    torch.manual_seed(5)
    net = CouplingNet(3, 8, 6, conv_1x1_kernel=True)
    torch.manual_seed(5)
    reference = [nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 6, 1)]
    assert set(net.state_dict()) == {f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    torch.testing.assert_close(net.conv1.weight, reference[0].weight)
    torch.testing.assert_close(net.conv3.weight, 0.01 * reference[2].weight)
    torch.testing.assert_close(net.conv3.bias, 0.01 * reference[2].bias)
    assert net.conv3.weight.abs().max() > 0


def test_additive_coupling_has_zero_logdet_and_half_output() -> None:
    layer = randomize_(AffineCoupling(5, width=4, coupling="additive"))
    assert layer._block.conv3.out_channels == 3  # t only for the C - C//2 = 3 channels
    x = torch.randn(2, 5, 3, 3)
    y, logdet = layer(x)
    torch.testing.assert_close(y[:, 2:], x[:, 2:] + layer._block(x[:, :2]))
    assert torch.equal(logdet, torch.zeros(2))


# --------------------------------------------------------------------------- space-to-depth


def test_space_to_depth_is_sub_pixel_major() -> None:
    b, c, h, w = 2, 3, 4, 6
    x = torch.randn(b, c, h, w)
    y, logdet = SpaceToDepth()(x)
    assert y.shape == (b, 4 * c, h // 2, w // 2) and torch.equal(logdet, torch.zeros(b))
    for dy in range(2):
        for dx in range(2):
            k = 2 * dy + dx
            for ch in range(c):
                assert torch.equal(y[:, k * c + ch], x[:, ch, dy::2, dx::2])
    unshuffled = F.pixel_unshuffle(x, 2)  # channel c*4 + k
    perm = [ch * 4 + k for k in range(4) for ch in range(c)]
    assert torch.equal(y, unshuffled[:, perm])


def test_space_to_depth_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SpaceToDepth()(torch.randn(1, 3, 5, 4))


@pytest.mark.parametrize("permutation", [True, False])
def test_invconv_factored_and_weight_paths_agree(permutation: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    layer = randomize_(InvConv1x1(6)).double()
    if not permutation:  # a general p (not in released checkpoints, but allowed)
        with torch.no_grad():
            layer.p.copy_(torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0])
    x = torch.randn(2, 6, 1, 2, dtype=torch.float64)  # 4 pixels < 6 channels
    results = {}
    for mode in ("weight", "factored", "auto"):
        monkeypatch.setattr(InvConv1x1, "apply_mode", mode)
        layer.zero_grad()
        y, _ = layer(x)
        (y * torch.arange(y.numel()).view_as(y)).sum().backward()
        results[mode] = (y.detach(), layer.l.grad.clone(), layer.u.grad.clone())
    eye = torch.eye(6, dtype=torch.float64)
    by_hand = layer.p @ (layer.l * layer.l_mask + eye) @ (layer.u * layer.u_mask)
    torch.testing.assert_close(results["weight"][0], torch.einsum("oc,bchw->bohw", by_hand, x))
    for mode in ("factored", "auto"):
        for a, b in zip(results[mode], results["weight"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.inverse(results["factored"][0]), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pixels", [(1, 2), (8, 8)])  # factored path, weight path
def test_invconv_forward_affine_equals_actnorm_then_invconv(pixels: tuple[int, int]) -> None:
    """The ActNorm folded into the 1x1 conv: same output, log-determinant and gradients
    (input, ``s``, ``b``, ``l``, ``u``) as the two layers run in turn."""
    torch.manual_seed(0)
    actnorm = randomize_(ActNorm(6), seed=1).double()
    conv = randomize_(InvConv1x1(6), seed=2).double()
    x = torch.randn(2, 6, *pixels, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 6, *pixels, dtype=torch.float64)
    params = [x, actnorm.s, actnorm.b, conv.l, conv.u]
    h, _ = actnorm(x)
    y_ref, logdet_ref = conv(h)
    grads_ref = torch.autograd.grad((y_ref * weights).sum() + logdet_ref.sum(), params)
    y, logdet = conv.forward_affine(x, actnorm.s, actnorm.b)
    grads = torch.autograd.grad((y * weights).sum() + logdet.sum(), params)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logdet, logdet_ref, rtol=1e-12, atol=1e-12)
    for grad, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("conv_1x1_kernel", [False, True])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_coupling_in_channels_last_layout_equals_the_default_layout(
    conv_1x1_kernel: bool, dtype: torch.dtype, tol: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training mode on the CPU at 16x16: the coupling net runs channels-last; output,
    log-determinant, gradients and inverse agree with the default layout, and the
    output is in the default layout. Eval mode never switches."""
    torch.manual_seed(0)
    layer = randomize_(AffineCoupling(5, width=6, conv_1x1_kernel=conv_1x1_kernel)).to(dtype)
    x = torch.randn(2, 5, 16, 16, dtype=dtype, requires_grad=True)
    weights = torch.randn(2, 5, 16, 16, dtype=dtype)
    results = {}
    for min_pixels in (0, 256):
        monkeypatch.setattr(CouplingNet, "channels_last_min_pixels", min_pixels)
        assert layer._block._channels_last(x) == (min_pixels > 0)
        y, logdet = layer(x)
        assert y.is_contiguous()
        grads = torch.autograd.grad((y * weights).sum() + logdet.sum(),
                                    [x, *layer.parameters()])
        results[min_pixels] = (y, logdet, *grads)
        torch.testing.assert_close(layer.inverse(y), x, rtol=0, atol=tol)
    for a, b in zip(results[0], results[256], strict=True):
        torch.testing.assert_close(a, b, rtol=100 * tol, atol=tol)
    layer.eval()
    assert not layer._block._channels_last(x)
