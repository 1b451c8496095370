"""Whole flows built from configs: indexing, inverses between any layer indices,
log-determinants, data-dependent init, shapes and sampling."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dubfiv import config as cfg
from dubfiv.flow import (
    FINAL_KEY,
    ActNorm,
    CouplingNet,
    SequentialFlow,
    Split,
    build_flow,
    describe_layers,
)
from dubfiv.heads import build_heads, check_heads

ROOT = Path(__file__).resolve().parents[2]
PAPER_TOML = ROOT / "config" / "model.toml"
SMALL_TOML = ROOT / "config" / "small_model.toml"
PAPER_WIDTHS = [48, 128, 384, 512, 512, 512, 512]


def paper_model(n_blocks: int = 32, widths: list[int] = PAPER_WIDTHS,
                image_size: int = 128) -> cfg.ModelConfig:
    """The paper's model config, built from the dataclasses (independently of the TOML)."""
    layers: list[cfg.LayerConfig] = []
    for stage, width in enumerate(widths):
        keep = "no_fade_out" if stage == 0 else "half"
        layers.append(cfg.FadeOutAndPool(channels_to_keep=keep, pool=2))
        layers.append(cfg.FlowBlocks(n_blocks=n_blocks, block_channels=width,
                                     conv_1x1_kernel=stage == len(widths) - 1))
    return cfg.ModelConfig(layers=layers, image_size=image_size, in_channels=3)


def tiny_model(image_size: int = 4, n_blocks: int = 2, width: int = 6) -> cfg.ModelConfig:
    """Every layer kind: space-to-depth, 3x3 and 1x1 nets, a half split and an int split."""
    return cfg.ModelConfig(
        layers=[
            cfg.FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
            cfg.FlowBlocks(n_blocks=n_blocks, block_channels=width),
            cfg.FadeOutAndPool(channels_to_keep="half", pool=1),
            cfg.FlowBlocks(n_blocks=n_blocks, block_channels=width, conv_1x1_kernel=True),
            cfg.FadeOutAndPool(channels_to_keep=4, pool=2),
            cfg.FlowBlocks(n_blocks=1, block_channels=width, coupling="additive",
                           conv_1x1_kernel=True),
        ],
        image_size=image_size,
        in_channels=3,
    )


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial, well-conditioned random parameters (not the identity init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if leaf == "s":
                sign = torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0)
                p.copy_(sign * (0.7 + 0.6 * torch.rand(p.shape, generator=g, dtype=p.dtype)))
            elif leaf == "u":
                p.copy_(0.2 * noise)
                p.diagonal().copy_(0.8 + 0.4 * torch.rand(p.shape[0], generator=g, dtype=p.dtype))
            elif leaf == "weight" and p.dim() == 4:
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.2 * noise)
    return module


def perturb_(module: nn.Module, seed: int = 0, strength: float = 1.0) -> nn.Module:
    """Trained-like weights for deep models: non-zero last coupling convs and mildly
    perturbed ActNorms and 1x1 convs around their (data-)initialised values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = strength * torch.randn(p.shape, generator=g, dtype=p.dtype)
            if ".conv3." in name:
                p.copy_(0.1 * noise / math.sqrt(p[0].numel()))
            elif name.endswith(".s"):
                p.mul_(1 + 0.05 * noise)
            elif name.endswith((".l", ".u")):
                p.add_(0.05 * noise / math.sqrt(p.shape[0]))
            else:
                p.add_(0.02 * noise)
    return module


# --------------------------------------------------------------------------- paper indexing


def test_paper_config_indexing_and_stage_shapes() -> None:
    infos = describe_layers(paper_model())
    assert len(infos) == 7 * 2 - 1 + 7 * 32 * 3 + 2 == 687
    assert [i.index for i in infos] == list(range(687))
    assert infos[641].n_features == 768 and infos[641].output_shape == (768, 1, 1)
    stage_shapes = [infos[i - 1].output_shape for i in (97, 195, 293, 391, 489, 587)]
    stage_shapes.append(infos[684].output_shape)
    assert stage_shapes == [(12, 64, 64), (24, 32, 32), (48, 16, 16), (96, 8, 8),
                            (192, 4, 4), (384, 2, 2), (768, 1, 1)]
    assert [i.index for i in infos if i.kind == "Split"] == [97, 195, 293, 391, 489, 587]
    assert [i.index for i in infos if i.kind == "SpaceToDepth"] == [0, 98, 196, 294, 392, 490,
                                                                    588]
    assert [i.kind for i in infos[1:4]] == ["ActNorm", "InvConv1x1", "AffineCoupling"]
    assert [i.kind for i in infos[-2:]] == ["ActNorm", "InvConv1x1"]
    # the faded-out latents and the final output partition the 3*128*128 input dimensions
    n = sum(math.prod(i.latent_shape) for i in infos if i.latent_shape) + 768
    assert n == 3 * 128 * 128


@pytest.mark.skipif(not PAPER_TOML.exists(), reason="config/model.toml not written yet")
def test_paper_toml_head_reads_768_features_at_layer_641() -> None:
    experiment = cfg.load_experiment(PAPER_TOML)
    assert [(i.kind, i.output_shape) for i in describe_layers(experiment.model)] == [
        (i.kind, i.output_shape) for i in describe_layers(paper_model())
    ]
    assert check_heads(experiment.classifiers, experiment.model) == [768]
    (head,) = build_heads(experiment.classifiers, experiment.model)
    assert head.after_layer == 641 and head.fc.weight.shape == (1, 768)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_paper_structure_with_one_block_per_stage_inverts(dtype: torch.dtype, tol: float) -> None:
    """The paper's 7 stages (widths /4 for speed) at 128x128, one block per stage."""
    torch.manual_seed(0)
    model = paper_model(n_blocks=1, widths=[w // 4 for w in PAPER_WIDTHS])
    flow = build_flow(model).to(dtype)
    x = torch.rand(2, 3, 128, 128, dtype=dtype)
    flow.data_init(x)
    out = flow(x, capture=[0, len(flow) - 1])
    assert out.h.shape == (2, 768, 1, 1)
    assert sorted(out.zs) == [4, 9, 14, 19, 24, 29]
    assert torch.equal(out.activations[len(flow) - 1], out.h)
    torch.testing.assert_close(flow.inverse(out.h, out.zs), x, rtol=0, atol=tol)


# --------------------------------------------------------------------------- inverses


def test_output_and_latent_shapes_match_a_forward_pass() -> None:
    torch.manual_seed(0)
    model = tiny_model(image_size=8)
    flow = build_flow(model)
    x = torch.rand(2, 3, 8, 8)
    out = flow(x, capture=range(len(flow)))
    shapes = flow.output_shapes((3, 8, 8))
    assert shapes == [tuple(out.activations[i].shape[1:]) for i in range(len(flow))]
    assert shapes == [i.output_shape for i in describe_layers(model)]
    latents = flow.latent_shapes((3, 8, 8))
    assert latents[FINAL_KEY] == tuple(out.h.shape[1:])
    assert {k: v for k, v in latents.items() if k != FINAL_KEY} == {
        k: tuple(z.shape[1:]) for k, z in out.zs.items()
    }
    assert sum(math.prod(s) for s in latents.values()) == 3 * 8 * 8


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_full_depth_small_model_inverts(dtype: torch.dtype, tol: float) -> None:
    """The small CPU config (config/small_model.toml, else a stand-in), all its layers,
    with random non-trivial weights."""
    torch.manual_seed(0)
    if SMALL_TOML.exists():
        model = cfg.load_experiment(SMALL_TOML).model
    else:
        model = paper_model(n_blocks=2, widths=[32, 64, 64, 128, 128, 128], image_size=64)
    flow = build_flow(model).to(dtype)
    # 16 images: at 1x1 resolution ActNorm statistics of 2 images are degenerate
    x = torch.rand(16, 3, model.image_size, model.image_size, dtype=dtype)
    flow.data_init(x)
    perturb_(flow)
    x = x[:2]
    out = flow(x)
    assert out.logdet.abs().max() > 1  # not an identity map
    torch.testing.assert_close(flow.inverse(out.h, out.zs), x, rtol=0, atol=tol)


def test_deep_model_inverts_in_float32() -> None:
    """Depth is the point: 3 stages x 16 blocks with random weights."""
    torch.manual_seed(0)
    model = cfg.ModelConfig(
        layers=[cfg.FadeOutAndPool(channels_to_keep="no_fade_out"),
                cfg.FlowBlocks(n_blocks=16, block_channels=8),
                cfg.FadeOutAndPool(),
                cfg.FlowBlocks(n_blocks=16, block_channels=8),
                cfg.FadeOutAndPool(),
                cfg.FlowBlocks(n_blocks=16, block_channels=8, conv_1x1_kernel=True)],
        image_size=8,
    )
    flow = build_flow(model)
    x = torch.rand(32, 3, 8, 8)
    flow.data_init(x)
    perturb_(flow)
    out = flow(x)
    assert torch.isfinite(out.logdet).all()
    torch.testing.assert_close(flow.inverse(out.h, out.zs), x, rtol=0, atol=1e-5)


def test_forward_and_inverse_between_any_indices_compose_to_the_whole() -> None:
    torch.manual_seed(0)
    flow = randomize_(build_flow(tiny_model(image_size=8))).double()
    n = len(flow)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    whole = flow(x, capture=range(n))
    assert [i for i, layer in enumerate(flow.layers) if isinstance(layer, Split)] == [7, 14]
    cuts = [0, 3, 7, 8, 14, 15, 17, n]  # [7, 8) and [14, 15): a Split alone
    h, zs, logdet = x, {}, torch.zeros(2, dtype=torch.float64)
    for a, b in itertools.pairwise(cuts):
        part = flow(h, start=a, end=b, capture=[a, b - 1, b])
        assert set(part.activations) == {a, b - 1}  # b is outside [a, b)
        torch.testing.assert_close(part.h, whole.activations[b - 1], rtol=0, atol=1e-12)
        assert set(part.zs) == {i for i in whole.zs if a <= i < b}
        h, logdet = part.h, logdet + part.logdet
        zs.update(part.zs)
    torch.testing.assert_close(logdet, whole.logdet, rtol=0, atol=1e-10)
    assert zs.keys() == whole.zs.keys()
    # inverse piecewise: from the final output back to each cut's input
    for a, b in zip(cuts[-2::-1], cuts[:0:-1], strict=True):
        h = flow.inverse(h, zs, start=a, end=b)
        expected = x if a == 0 else whole.activations[a - 1]
        torch.testing.assert_close(h, expected, rtol=0, atol=1e-10)
    # from any layer back to the image in one call
    for end in (1, 8, 15, n - 1):
        back = flow.inverse(whole.activations[end - 1], whole.zs, start=0, end=end)
        torch.testing.assert_close(back, x, rtol=0, atol=1e-10)
    empty = flow(x, start=5, end=5)
    assert empty.h is x and not empty.zs and torch.equal(empty.logdet, torch.zeros(2).double())
    with pytest.raises(IndexError):
        flow(x, start=3, end=n + 1)
    with pytest.raises(KeyError, match="zs"):
        flow.inverse(whole.h, {}, start=0)


def test_whole_model_logdet_equals_autograd_jacobian() -> None:
    torch.manual_seed(0)
    flow = randomize_(build_flow(tiny_model(image_size=4))).double()
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    out = flow(x)

    def as_vector(v: torch.Tensor) -> torch.Tensor:
        result = flow(v)
        parts = [result.zs[k].flatten() for k in sorted(result.zs)] + [result.h.flatten()]
        return torch.cat(parts)

    for b in range(2):
        jac = torch.autograd.functional.jacobian(as_vector, x[b : b + 1])
        jac = jac.reshape(48, 48)
        sign, expected = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(out.logdet[b], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-11)])
def test_training_shortcuts_give_the_same_step(dtype: torch.dtype, tol: float,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A training step (train mode, gradients) with the ActNorms folded into the 1x1
    convs and channels-last coupling nets gives the latents, log-determinant and
    gradients of the layers run one by one in the default layout; a captured ActNorm
    output is its own; without gradients or in eval mode nothing is folded."""
    torch.manual_seed(0)
    model = tiny_model(image_size=32)  # 16x16 after space-to-depth: channels-last nets
    flow = perturb_(build_flow(model).to(dtype))
    x = torch.rand(2, 3, 32, 32, dtype=dtype)
    flow.data_init(x)
    actnorm = next(i for i, layer in enumerate(flow.layers) if isinstance(layer, ActNorm))
    results = {}
    for on in (False, True):
        monkeypatch.setattr(SequentialFlow, "fold_actnorm", on)
        monkeypatch.setattr(CouplingNet, "channels_last_min_pixels", 256 if on else 0)
        assert flow._folds_into_next(actnorm) == on
        out = flow(x, capture=[actnorm])
        loss = out.logdet.sum() + sum((z * z).sum() for z in out.zs.values()) + out.h.sum()
        grads = torch.autograd.grad(loss, list(flow.parameters()))
        all_grads = torch.cat([g.flatten() for g in grads])
        results[on] = [out.h, *out.zs.values(), out.logdet, out.activations[actnorm], all_grads]
        with torch.no_grad():
            assert not flow._folds_into_next(actnorm)
    for a, b in zip(results[False], results[True], strict=True):
        # relative to the whole tensor (all gradients as one vector): single gradients
        # that are zero in exact arithmetic differ by rounding
        assert (a - b).norm() <= tol * b.norm(), (a - b).abs().max()
    flow.eval()
    assert not flow._folds_into_next(actnorm)


# --------------------------------------------------------------------------- init, sampling


def test_data_init_normalises_every_actnorm_in_one_pass() -> None:
    torch.manual_seed(0)
    model = tiny_model(image_size=8, width=8)
    flow = build_flow(model)
    assert not flow.initialized
    x = torch.rand(32, 3, 8, 8)
    flow.data_init(x)
    assert flow.initialized
    out = flow(x, capture=range(len(flow)))
    actnorm_layers = [i for i, layer in enumerate(flow.layers) if isinstance(layer, ActNorm)]
    assert len(actnorm_layers) == 2 + 2 + 1 + 1
    for i in actnorm_layers:
        h = out.activations[i]
        torch.testing.assert_close(h.mean(dim=(0, 2, 3)), torch.zeros(h.shape[1]),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(h.std(dim=(0, 2, 3), unbiased=False),
                                   torch.ones(h.shape[1]), atol=1e-4, rtol=0)


def test_data_init_initialises_the_actnorms_inside_coupling_nets() -> None:
    torch.manual_seed(0)
    flow = build_flow(tiny_model(image_size=8))
    nets = [m for m in flow.modules() if isinstance(m, ActNorm)]
    x = torch.rand(8, 3, 8, 8)
    flow.data_init(x)
    assert all(m.initialized for m in nets)
    assert any(not torch.equal(m.s, torch.ones_like(m.s)) for m in nets)


def test_sample_shapes_and_generator() -> None:
    torch.manual_seed(0)
    flow = build_flow(tiny_model(image_size=8))
    flow.data_init(torch.rand(8, 3, 8, 8))
    flow.eval()
    a = flow.sample(3, 0.7, (3, 8, 8), generator=torch.Generator().manual_seed(1))
    b = flow.sample(3, 0.7, (3, 8, 8), generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    # zero temperature: every latent is zero, so re-encoding gives zeros back
    zero = flow.sample(2, 0.0, (3, 8, 8))
    out = flow(zero)
    torch.testing.assert_close(out.h, torch.zeros_like(out.h), atol=1e-5, rtol=0)


def test_state_dict_has_only_the_released_keys() -> None:
    flow = build_flow(tiny_model(image_size=4))
    allowed = {"s", "b", "p", "l", "u", "l_mask", "u_mask"} | {
        f"_block.{m}.{p}" for m in ("conv1", "conv2", "conv3") for p in ("weight", "bias")
    } | {f"_block.actnorm{n}.{p}" for n in (1, 2) for p in ("s", "b")}
    for key in flow.state_dict():
        prefix, _, rest = key.split(".", 2)
        assert prefix == "layers" and rest in allowed, key
    param_free = {int(k.split(".")[1]) for k in flow.state_dict()} ^ set(range(len(flow)))
    assert {type(flow.layers[i]).__name__ for i in param_free} == {"Split", "SpaceToDepth"}


def test_bad_configs_raise_config_errors() -> None:
    with pytest.raises(cfg.ConfigError, match=r"layers\[0\].*divisible"):
        build_flow(cfg.ModelConfig(layers=[cfg.FadeOutAndPool(pool=2)], image_size=5))
    with pytest.raises(cfg.ConfigError, match=r"layers\[1\].*channels_to_keep"):
        describe_layers(cfg.ModelConfig(
            layers=[cfg.FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
                    cfg.FadeOutAndPool(channels_to_keep=12, pool=1)],
            image_size=4))
    with pytest.raises(cfg.ConfigError, match="image_size"):
        describe_layers(paper_model(image_size=64))


def test_sequential_flow_rejects_non_flow_layers() -> None:
    with pytest.raises(TypeError, match="layer 1"):
        SequentialFlow([Split(), nn.ReLU()])


def test_forward_under_autocast_keeps_logdet_and_loss_in_float32() -> None:
    """Mixed precision (here CPU bfloat16 autocast): activations may be low precision,
    log-determinants and bits/dim stay float32 and close to the float32 result."""
    from dubfiv.losses import bits_per_dim

    torch.manual_seed(0)
    flow = build_flow(tiny_model(image_size=8, width=8))
    x = torch.rand(16, 3, 8, 8)
    flow.data_init(x)
    perturb_(flow)
    reference = flow(x)
    bpd_ref = bits_per_dim(reference.h, reference.zs, reference.logdet, 192)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = flow(x)
        bpd = bits_per_dim(out.h, out.zs, out.logdet, 192)
    assert out.logdet.dtype == torch.float32 and bpd.dtype == torch.float32
    torch.testing.assert_close(out.logdet, reference.logdet, rtol=1e-2, atol=0.5)
    torch.testing.assert_close(bpd, bpd_ref, rtol=1e-2, atol=0.05)
    bpd.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters() if p.grad is not None)


@pytest.mark.slow
def test_paper_model_at_full_size_inverts_and_matches_indexing() -> None:
    """The real paper model (687 layers, 268M parameters) at 128x128 in float32."""
    torch.manual_seed(0)
    model = paper_model()
    flow = build_flow(model)
    assert sum(p.numel() for p in flow.parameters()) > 2e8
    assert flow.output_shapes((3, 128, 128))[641] == (768, 1, 1)
    with torch.no_grad():
        flow.data_init(torch.rand(32, 3, 128, 128))
        flow.eval()
        x = torch.rand(2, 3, 128, 128)
        out = flow(x, capture=[641])
        assert out.activations[641].flatten(1).shape == (2, 768)
        torch.testing.assert_close(flow.inverse(out.h, out.zs), x, rtol=0, atol=1e-5)
        for end in (98, 400, 642):  # from inside the model back to the image
            part = flow(x, end=end)
            torch.testing.assert_close(flow.inverse(part.h, part.zs, end=end), x,
                                       rtol=0, atol=1e-5)
