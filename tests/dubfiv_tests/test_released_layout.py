"""The released checkpoint's state-dict layout (docs/released_model.md), built by hand from
the key list:
it loads strictly, gives the outputs of an independent reference computation, and the
architecture can be inferred back from the keys and shapes alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from dubfiv import config as cfg
from dubfiv.flow import (
    StateDictLayoutError,
    build_flow,
    describe_layers,
    flow_from_state_dict,
    infer_layers,
    model_config_from_state_dict,
)
from dubfiv.heads import LinearHead

# A small model, layer by layer, as the released code lays it out:
# ("s2d",), ("split",), ("actnorm", C), ("invconv", C), ("coupling", C, width, kernel)
SMALL_PLAN: list[tuple] = [
    ("s2d",),                                  # 0: 3x8x8 -> 12x4x4
    ("actnorm", 12), ("invconv", 12), ("coupling", 12, 6, 3),
    ("actnorm", 12), ("invconv", 12), ("coupling", 12, 6, 3),
    ("split",),                                # 7: keeps 6x4x4
    ("s2d",),                                  # 8: 24x2x2
    ("actnorm", 24), ("invconv", 24), ("coupling", 24, 5, 1),
    ("actnorm", 24), ("invconv", 24),          # 12, 13: final ActNorm and 1x1 conv
]
SMALL_CONFIG = cfg.ModelConfig(
    layers=[
        cfg.FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
        cfg.FlowBlocks(n_blocks=2, block_channels=6),
        cfg.FadeOutAndPool(channels_to_keep="half", pool=2),
        cfg.FlowBlocks(n_blocks=1, block_channels=5, conv_1x1_kernel=True),
    ],
    image_size=8,
    in_channels=3,
)


def paper_plan() -> list[tuple]:
    plan: list[tuple] = []
    channels = 3
    for stage, width in enumerate([48, 128, 384, 512, 512, 512, 512]):
        if stage > 0:
            plan.append(("split",))
            channels //= 2
        plan.append(("s2d",))
        channels *= 4
        for _ in range(32):
            plan += [("actnorm", channels), ("invconv", channels),
                     ("coupling", channels, width, 1 if stage == 6 else 3)]
    return [*plan, ("actnorm", channels), ("invconv", channels)]


def make_tensor(shape: tuple[int, ...], g: torch.Generator | None, scale: float = 1.0) -> Tensor:
    if g is None:
        return torch.empty(shape, device="meta")
    return scale * torch.randn(shape, generator=g, dtype=torch.float64)


def released_state_dict(plan: list[tuple], seed: int | None = 0) -> dict[str, Tensor]:
    """Random tensors under the keys of docs/released_model.md (``seed=None``: shape-only meta
    tensors)."""
    g = None if seed is None else torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}
    for i, spec in enumerate(plan):
        kind, pre = spec[0], f"layers.{i}."
        if kind == "actnorm":
            c = spec[1]
            s = make_tensor((1, c, 1, 1), g, 0.3)
            sd[pre + "s"] = s if g is None else (1 + s.abs()) * torch.sign(s)
            sd[pre + "b"] = make_tensor((1, c, 1, 1), g, 0.3)
        elif kind == "invconv":
            c = spec[1]
            if g is None:
                for name in ("p", "l", "u", "l_mask", "u_mask"):
                    sd[pre + name] = torch.empty(c, c, device="meta")
                continue
            perm = torch.randperm(c, generator=g)
            sd[pre + "p"] = torch.eye(c, dtype=torch.float64)[perm]
            # full random matrices: the masks must remove their other triangle
            sd[pre + "l"] = make_tensor((c, c), g, 0.3)
            u = make_tensor((c, c), g, 0.3)
            u.diagonal().copy_(torch.sign(u.diagonal()) * (0.7 + u.diagonal().abs()))
            sd[pre + "u"] = u
            sd[pre + "l_mask"] = torch.tril(torch.ones(c, c, dtype=torch.float64), -1)
            sd[pre + "u_mask"] = torch.triu(torch.ones(c, c, dtype=torch.float64))
        elif kind == "coupling":
            c, width, k = spec[1:]
            c_a, c_b = c // 2, c - c // 2
            convs = {1: (width, c_a, k), 2: (width, width, 1), 3: (2 * c_b, width, k)}
            for n, (c_out, c_in, kk) in convs.items():
                sd[pre + f"_block.conv{n}.weight"] = make_tensor(
                    (c_out, c_in, kk, kk), g, 0.5 / (c_in * kk * kk) ** 0.5)
                sd[pre + f"_block.conv{n}.bias"] = make_tensor((c_out,), g, 0.1)
            if k == 3:
                for n in (1, 2):
                    sd[pre + f"_block.actnorm{n}.s"] = make_tensor((1, width, 1, 1), g, 0.2) + (
                        0 if g is None else 1.0)
                    sd[pre + f"_block.actnorm{n}.b"] = make_tensor((1, width, 1, 1), g, 0.2)
    return sd


def reference_forward(plan: list[tuple], sd: dict[str, Tensor], x: Tensor
                      ) -> tuple[Tensor, dict[int, Tensor], Tensor]:
    """An independent implementation of the released model's forward pass."""
    logdet = torch.zeros(x.shape[0], dtype=x.dtype)
    zs = {}
    for i, spec in enumerate(plan):
        kind, pre = spec[0], f"layers.{i}."
        h, w = x.shape[2:]
        if kind == "s2d":  # output channel k*C + c <- input c at sub-pixel k = 2*dy + dx
            x = torch.cat([x[:, :, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)], dim=1)
        elif kind == "split":
            half = x.shape[1] // 2
            x, zs[i] = x[:, :half], x[:, half:]
        elif kind == "actnorm":
            x = sd[pre + "s"] * x + sd[pre + "b"]
            logdet = logdet + h * w * torch.log(torch.abs(sd[pre + "s"])).sum()
        elif kind == "invconv":
            eye = torch.eye(x.shape[1], dtype=x.dtype)
            lower = sd[pre + "l"] * sd[pre + "l_mask"] + eye
            upper = sd[pre + "u"] * sd[pre + "u_mask"]
            weight = sd[pre + "p"] @ lower @ upper
            x = torch.einsum("oc,bchw->bohw", weight, x)
            logdet = logdet + h * w * torch.log(torch.abs(torch.diagonal(sd[pre + "u"]))).sum()
        elif kind == "coupling":
            c, _, k = spec[1:]
            x_a, x_b = x[:, : c // 2], x[:, c // 2 :]

            def conv(v: Tensor, n: int, pre: str = pre, k: int = k) -> Tensor:
                size = sd[pre + f"_block.conv{n}.weight"].shape[-1]
                return F.conv2d(v, sd[pre + f"_block.conv{n}.weight"],
                                sd[pre + f"_block.conv{n}.bias"], padding=size // 2)

            a = conv(x_a, 1)
            if k == 3:
                a = sd[pre + "_block.actnorm1.s"] * a + sd[pre + "_block.actnorm1.b"]
            a = conv(torch.relu(a), 2)
            if k == 3:
                a = sd[pre + "_block.actnorm2.s"] * a + sd[pre + "_block.actnorm2.b"]
            out = conv(torch.relu(a), 3)
            c_b = x_b.shape[1]
            scale = torch.sigmoid(out[:, :c_b]) + 0.5
            x = torch.cat([x_a, scale * x_b + out[:, c_b:]], dim=1)
            logdet = logdet + torch.log(scale).sum(dim=(1, 2, 3))
    return x, zs, logdet


def test_hand_built_state_dict_loads_strictly_and_matches_reference() -> None:
    sd = released_state_dict(SMALL_PLAN)
    flow = build_flow(SMALL_CONFIG).double()
    assert {k: tuple(v.shape) for k, v in flow.state_dict().items()} == {
        k: tuple(v.shape) for k, v in sd.items()
    }
    flow.load_state_dict(sd, strict=True)
    assert flow.initialized  # loaded ActNorms count as initialised
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    h_ref, zs_ref, logdet_ref = reference_forward(SMALL_PLAN, sd, x)
    for mode in ("train", "eval"):
        getattr(flow, mode)()
        out = flow(x)
        torch.testing.assert_close(out.h, h_ref, rtol=1e-10, atol=1e-10)
        assert out.zs.keys() == zs_ref.keys() == {7}
        torch.testing.assert_close(out.zs[7], zs_ref[7], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.logdet, logdet_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(flow.inverse(out.h, out.zs), x, rtol=0, atol=1e-10)


def test_loading_float32_state_dict_into_float32_flow() -> None:
    sd = {k: v.float() for k, v in released_state_dict(SMALL_PLAN, seed=3).items()}
    flow = build_flow(SMALL_CONFIG)
    flow.load_state_dict(sd, strict=True)
    x = torch.rand(2, 3, 8, 8)
    h_ref, _, logdet_ref = reference_forward(
        SMALL_PLAN, {k: v.double() for k, v in sd.items()}, x.double())
    out = flow(x)
    torch.testing.assert_close(out.h.double(), h_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logdet.double(), logdet_ref, rtol=1e-5, atol=1e-4)


def test_flow_from_state_dict_reconstructs_the_architecture() -> None:
    sd = released_state_dict(SMALL_PLAN, seed=1)
    assert model_config_from_state_dict(sd, in_channels=3, image_size=8) == SMALL_CONFIG
    inferred = infer_layers(sd, 3, 8)
    assert [(i.kind, i.output_shape) for i in inferred] == [
        (i.kind, i.output_shape) for i in describe_layers(SMALL_CONFIG)
    ]
    flow = flow_from_state_dict(sd, in_channels=3, image_size=8).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    h_ref, zs_ref, logdet_ref = reference_forward(SMALL_PLAN, sd, x)
    out = flow(x)
    torch.testing.assert_close(out.h, h_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.zs[7], zs_ref[7], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.logdet, logdet_ref, rtol=1e-10, atol=1e-10)
    # a DistributedDataParallel prefix is stripped
    ddp = {f"module.{k}": v for k, v in sd.items()}
    torch.testing.assert_close(flow_from_state_dict(ddp, 3, 8).double()(x).h, h_ref)


def test_paper_layout_keys_shapes_and_inference() -> None:
    plan = paper_plan()
    assert len(plan) == 687
    sd = released_state_dict(plan, seed=None)  # shapes only (meta tensors)
    with torch.device("meta"):
        flow = build_flow(describe_model_paper(), random_init=False)
    assert {k: tuple(v.shape) for k, v in flow.state_dict().items()} == {
        k: tuple(v.shape) for k, v in sd.items()
    }
    assert model_config_from_state_dict(sd, 3, 128) == describe_model_paper()
    inferred = infer_layers(sd, 3, 128)
    assert inferred[641].n_features == 768
    assert [i.index for i in inferred if i.kind == "Split"] == [97, 195, 293, 391, 489, 587]
    head = LinearHead(inferred[641].n_features, 641)
    head.load_state_dict({"fc.weight": torch.randn(1, 768), "fc.bias": torch.randn(1)},
                         strict=True)


def describe_model_paper() -> cfg.ModelConfig:
    layers: list[cfg.LayerConfig] = []
    for stage, width in enumerate([48, 128, 384, 512, 512, 512, 512]):
        layers.append(cfg.FadeOutAndPool(
            channels_to_keep="no_fade_out" if stage == 0 else "half", pool=2))
        layers.append(cfg.FlowBlocks(n_blocks=32, block_channels=width,
                                     conv_1x1_kernel=stage == 6))
    return cfg.ModelConfig(layers=layers, image_size=128, in_channels=3)


def test_inference_handles_int_splits_and_additive_couplings() -> None:
    config = cfg.ModelConfig(
        layers=[cfg.FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
                cfg.FlowBlocks(n_blocks=1, block_channels=4),
                cfg.FadeOutAndPool(channels_to_keep=5, pool=2),
                cfg.FlowBlocks(n_blocks=2, block_channels=4, coupling="additive"),
                cfg.FlowBlocks(n_blocks=1, block_channels=3, conv_1x1_kernel=True)],
        image_size=8,
    )
    sd = build_flow(config).state_dict()
    assert model_config_from_state_dict(sd, 3, 8) == config


def test_bad_state_dicts_raise_layout_errors() -> None:
    sd = released_state_dict(SMALL_PLAN, seed=2)
    with pytest.raises(StateDictLayoutError, match="not of the form"):
        infer_layers({**sd, "foo.bar": torch.zeros(1)}, 3, 8)
    wrong = dict(sd)
    wrong["layers.4.s"] = torch.ones(1, 7, 1, 1)
    wrong["layers.4.b"] = torch.ones(1, 7, 1, 1)
    with pytest.raises(StateDictLayoutError, match="layer 4"):
        infer_layers(wrong, 3, 8)
    # 12 channels cannot come from 3 input channels at an odd image size
    with pytest.raises(StateDictLayoutError, match="Split/SpaceToDepth"):
        infer_layers(sd, 3, 7)
