"""Counterfactuals: the activation lands on the target logit and re-encoding gives it back."""

from __future__ import annotations

import torch

from dubfiv.config import FadeOutAndPool, FlowBlocks, ModelConfig
from dubfiv.explain.counterfactual import counterfactuals, encode, shift_to_logit
from dubfiv.flow import build_flow
from dubfiv.heads import LinearHead


def _model(dtype: torch.dtype) -> tuple[torch.nn.Module, LinearHead, torch.Tensor]:
    torch.manual_seed(0)
    config = ModelConfig(
        image_size=16,
        layers=[
            FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
            FlowBlocks(n_blocks=2, block_channels=8),
            FadeOutAndPool(channels_to_keep="half", pool=2),
            FlowBlocks(n_blocks=2, block_channels=8),
        ],
    )
    flow = build_flow(config).to(dtype)
    images = torch.rand(24, 3, 16, 16, dtype=dtype) * 0.8 + 0.1
    flow.data_init(images)
    # Non-trivial couplings: the zero-initialised last convs would make them identities.
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if "conv3" in name:
                p.normal_(0, 0.01)
    flow.eval()
    after = 11  # coupling of the first block after the split + pool: 24 x 4 x 4 features
    n_features = flow(images[:1], 0, after + 1).h[0].numel()
    head = LinearHead(n_features, after).to(dtype)
    return flow, head, images


def test_shift_to_logit_hits_target_and_keeps_the_orthogonal_part() -> None:
    torch.manual_seed(1)
    h = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    w = torch.randn(1, 18, dtype=torch.float64)
    b = torch.randn(1, dtype=torch.float64)
    target = torch.linspace(-3, 3, 5, dtype=torch.float64)
    moved = shift_to_logit(h, w, b, target)
    torch.testing.assert_close(moved.flatten(1) @ w[0] + b, target, rtol=0, atol=1e-12)
    # the change is parallel to w: the projection onto w's orthogonal complement is unchanged
    unit = w[0] / w[0].norm()
    ortho = lambda v: v - (v @ unit)[:, None] * unit[None]  # noqa: E731
    torch.testing.assert_close(ortho(moved.flatten(1)), ortho(h.flatten(1)), rtol=0, atol=1e-12)


def test_reencoding_gives_the_target_logit_float64() -> None:
    flow, head, images = _model(torch.float64)
    targets = torch.tensor([-4.0, -1.0, 0.0, 1.0, 4.0], dtype=torch.float64)
    result = counterfactuals(flow, head, images[:6], targets, batch_size=7, clip=False)
    assert result.images.shape == (6, 5, 3, 16, 16)
    assert float(result.deviation.max()) < 1e-3
    assert float(result.deviation.max()) < 1e-8  # float64: far tighter than the spec's 1e-3
    _, _, logits = encode(flow, head, images[:6])
    torch.testing.assert_close(result.original_logits, logits)


def test_target_equal_to_own_logit_returns_the_image() -> None:
    flow, head, images = _model(torch.float64)
    _, _, logits = encode(flow, head, images[:4])
    result = counterfactuals(flow, head, images[:4], logits[:, None], clip=False)
    torch.testing.assert_close(result.images[:, 0], images[:4], rtol=0, atol=1e-10)


def test_batching_does_not_change_the_result_and_clipping_is_reported() -> None:
    flow, head, images = _model(torch.float32)
    targets = torch.tensor([-50.0, 0.0, 50.0])
    a = counterfactuals(flow, head, images[:4], targets, batch_size=1)
    b = counterfactuals(flow, head, images[:4], targets, batch_size=12)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=1e-5)
    assert a.images.min() >= 0 and a.images.max() <= 1
    # far-away targets push pixels out of [0, 1]: reported, not hidden
    assert float(a.clipped_fraction[:, [0, 2]].max()) > 0
    assert 0 <= float(a.clipped_fraction.min()) <= float(a.clipped_fraction.max()) <= 1
    assert float(a.deviation.max()) < 1e-2
