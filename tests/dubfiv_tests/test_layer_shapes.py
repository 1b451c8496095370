"""Layer shapes in one place (docs/flow.md, "Shapes"): each layer class states its output
shape; the builder's plan, the state-dict inference and the layers themselves agree with
the shapes a forward pass really produces."""

from __future__ import annotations

import pytest
import torch

from dubfiv.config import ConfigError, FadeOutAndPool, FlowBlocks, ModelConfig
from dubfiv.flow import SpaceToDepth, Split, build_flow, infer_layers, plan_layers
from dubfiv.summary import layer_table

MODEL = ModelConfig(
    layers=[FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
            FlowBlocks(n_blocks=1, block_channels=8),
            FadeOutAndPool(channels_to_keep="half", pool=2),
            FlowBlocks(n_blocks=1, block_channels=8, conv_1x1_kernel=True),
            FadeOutAndPool(channels_to_keep=5, pool=2),
            FlowBlocks(n_blocks=1, block_channels=8, coupling="additive")],
    image_size=16, in_channels=3)


def test_planned_and_stated_shapes_match_a_forward_pass() -> None:
    torch.manual_seed(0)
    flow = build_flow(MODEL)
    plan = plan_layers(MODEL)
    x = torch.rand(2, 3, 16, 16)
    flow.data_init(x)
    with torch.no_grad():
        out = flow(x, capture=range(len(flow)))
    assert len(plan) == len(flow) == len(out.activations)
    for info, layer in zip(plan, flow.layers, strict=True):
        actual = tuple(out.activations[info.index].shape[1:])
        assert info.output_shape == actual, info
        assert layer.output_shape(info.input_shape) == actual, info
        if info.kind == "Split":
            assert info.latent_shape == tuple(out.zs[info.index].shape[1:])
            assert layer.latent_shape(info.input_shape) == info.latent_shape
    # the shape changes really happened: 3x16x16 -> 12x8x8 -> 6x8x8 -> 24x4x4 -> 5x4x4 -> 20x2x2
    assert [i.output_shape for i in plan if i.kind in ("Split", "SpaceToDepth")] == [
        (12, 8, 8), (6, 8, 8), (24, 4, 4), (5, 4, 4), (20, 2, 2)]
    assert flow.output_shapes((3, 16, 16)) == [i.output_shape for i in plan]
    inferred = infer_layers(flow.state_dict(), in_channels=3, image_size=16)
    assert [(i.kind, i.output_shape, i.latent_shape) for i in inferred] == [
        (i.kind, i.output_shape, i.latent_shape) for i in plan]
    from dubfiv.config import ExperimentConfig

    rows = layer_table(ExperimentConfig(model=MODEL, classifiers=[]))
    assert [tuple(r["output_shape"]) for r in rows] == [i.output_shape for i in plan]


def test_shape_rules_without_a_layer() -> None:
    assert SpaceToDepth.shape_rule((3, 4, 6), factor=2) == (12, 2, 3)
    assert Split.shape_rule((7, 2, 2), channels_to_keep="half") == (3, 2, 2)
    assert Split.latent_rule((7, 2, 2), channels_to_keep="half") == (4, 2, 2)
    with pytest.raises(ValueError, match="divisible"):
        SpaceToDepth.shape_rule((3, 5, 4), factor=2)
    with pytest.raises(ConfigError, match=r"layers\[0\]': pool=2: .*divisible"):
        plan_layers(ModelConfig(layers=[FadeOutAndPool(channels_to_keep="no_fade_out", pool=2)],
                                image_size=5))
