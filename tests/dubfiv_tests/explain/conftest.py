"""A tiny random flow with a head, for exact (float64) tests of the explanations."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dubfiv.config import FadeOutAndPool, FlowBlocks, ModelConfig
from dubfiv.flow import SequentialFlow, build_flow
from dubfiv.heads import LinearHead

TinyModel = tuple[SequentialFlow, LinearHead, torch.Tensor, ModelConfig]

TINY_CONFIG = ModelConfig(
    image_size=16,
    layers=[
        FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),  # 0: 12x8x8
        FlowBlocks(n_blocks=2, block_channels=8),  # 1-6 (1x1 convs at 2 and 5, 8x8)
        FadeOutAndPool(channels_to_keep="half", pool=2),  # 7 split, 8: 24x4x4
        FlowBlocks(n_blocks=2, block_channels=8),  # 9-14 (1x1 convs at 10 and 13)
    ],
)
"""Layers: 0 SpaceToDepth, 1-6 two blocks at 8x8 (12 channels), 7 Split, 8 SpaceToDepth,
9-14 two blocks at 4x4 (24 channels), 15-16 final ActNorm and 1x1 conv."""
HEAD_LAYER = 11


def _build(dtype: torch.dtype, seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    flow = build_flow(TINY_CONFIG).to(dtype)
    images = torch.rand(24, 3, 16, 16, dtype=dtype) * 0.8 + 0.1
    flow.data_init(images)
    with torch.no_grad():  # non-trivial couplings (the last convs start at zero)
        for name, p in flow.named_parameters():
            if "conv3" in name:
                p.normal_(0, 0.05)
    flow.eval()
    head = LinearHead(24 * 4 * 4, HEAD_LAYER).to(dtype).eval()
    with torch.no_grad():
        head.fc.weight.normal_(0, 0.2)
    return flow, head, images, TINY_CONFIG


@pytest.fixture
def tiny_model() -> Callable[..., TinyModel]:
    """``tiny_model(dtype, seed=0) -> (flow, head, images [24, 3, 16, 16], config)``."""
    return _build
