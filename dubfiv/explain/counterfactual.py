"""Counterfactuals: move an image's activation along the head's weight, invert to an image.

For an image ``x`` with activation ``h`` at the head's layer ``L`` (and the
latents ``zs`` faded out before ``L``), the counterfactual for a target logit
``t`` is the image

    x' = f^-1_{0..L}(h', zs),    h' = h + (t - w.h - b) * w / |w|^2,

so that ``w.h' + b = t`` exactly, while everything the head does not see
(the component of ``h`` orthogonal to ``w`` and every faded-out latent) stays
as it was (``docs/explanations.md``). Re-encoding ``x'`` gives ``t`` back
up to float error; images may leave [0, 1], which :class:`Counterfactuals`
reports rather than hides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from dubfiv.flow import SequentialFlow
from dubfiv.heads import LinearHead

__all__ = ["Counterfactuals", "counterfactuals", "encode", "shift_to_logit"]


def shift_to_logit(h: Tensor, weight: Tensor, bias: Tensor, target: Tensor) -> Tensor:
    """Move activations along ``weight`` so that the linear head outputs ``target``.

    Args:
        h: activations ``[B, ...]`` (flattened to ``[B, F]`` in C, H, W order).
        weight: the head's weight ``[F]`` or ``[1, F]``.
        bias: the head's bias (scalar or ``[1]``).
        target: target logits ``[B]`` (or a scalar).

    Returns:
        ``h'`` of ``h``'s shape with ``weight . flatten(h') + bias == target``.
    """
    w = weight.reshape(-1).to(h.dtype)
    flat = h.flatten(1)
    current = flat @ w + bias.reshape(()).to(h.dtype)
    target = torch.as_tensor(target, dtype=h.dtype, device=h.device).expand_as(current)
    step = (target - current) / (w @ w)
    return (flat + step[:, None] * w[None, :]).reshape(h.shape)


@dataclasses.dataclass
class Counterfactuals:
    """Counterfactual images of ``N`` images at ``T`` target logits.

    Attributes:
        images: ``[N, T, C, H, W]``, clipped to [0, 1] if requested.
        targets: ``[N, T]`` target logits.
        logits: ``[N, T]`` logits measured by re-encoding the (unclipped) images.
        original_logits: ``[N]`` logits of the real images.
        clipped_fraction: ``[N, T]`` fraction of pixel values outside [0, 1]
            before clipping.
    """

    images: Tensor
    targets: Tensor
    logits: Tensor
    original_logits: Tensor
    clipped_fraction: Tensor

    @property
    def deviation(self) -> Tensor:
        """``[N, T]`` |measured - target| logit."""
        return (self.logits - self.targets).abs()

    def summary(self) -> dict[str, float]:
        """Mean/max logit deviation and mean/max clipped fraction (plain floats)."""
        return {
            "mean_abs_logit_deviation": float(self.deviation.mean()),
            "max_abs_logit_deviation": float(self.deviation.max()),
            "mean_clipped_fraction": float(self.clipped_fraction.mean()),
            "max_clipped_fraction": float(self.clipped_fraction.max()),
        }


@torch.no_grad()
def encode(
    flow: SequentialFlow, head: LinearHead, x: Tensor
) -> tuple[Tensor, dict[int, Tensor], Tensor]:
    """Activation at the head's layer, the latents faded out before it, and the logits.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].

    Returns:
        ``(h [B, ...], zs {layer index: latent}, logits [B])``.
    """
    out = flow(x, 0, head.after_layer + 1)
    return out.h, out.zs, head(out.h)


@torch.no_grad()
def counterfactuals(
    flow: SequentialFlow,
    head: LinearHead,
    images: Tensor,
    targets: Tensor | Sequence[float],
    batch_size: int = 32,
    clip: bool = True,
) -> Counterfactuals:
    """Counterfactual images at the given target logits, computed in batches.

    Args:
        flow: the invertible network (eval mode).
        head: the linear head whose weight defines the direction.
        images: real images ``[N, C, H, W]`` in [0, 1] (any device; moved to the flow's).
        targets: ``[T]`` logits used for every image, or ``[N, T]`` per image.
        batch_size: images per pass through the network (each pass handles
            ``batch_size`` (image, target) pairs).
        clip: clip the returned images to [0, 1] (the measured logits always
            come from the unclipped inversion).

    Returns:
        :class:`Counterfactuals` on the CPU, in the flow's dtype.
    """
    param = next(flow.parameters())
    device, dtype = param.device, param.dtype
    images = images.to(device=device, dtype=dtype)
    n = images.shape[0]
    targets = torch.as_tensor(targets, dtype=dtype, device=device)
    if targets.dim() == 1:
        targets = targets[None, :].expand(n, -1)
    if targets.shape[0] != n:
        raise ValueError(f"targets {tuple(targets.shape)} do not match {n} images")
    t = targets.shape[1]
    pair_image = torch.arange(n, device=device).repeat_interleave(t)
    pair_target = targets.reshape(-1)

    out_images, out_logits, out_clipped = [], [], []
    original = torch.empty(n, dtype=dtype)
    for start in range(0, n * t, batch_size):
        idx = slice(start, min(start + batch_size, n * t))
        x = images[pair_image[idx]]
        h, zs, logits = encode(flow, head, x)
        original[pair_image[idx].cpu()] = logits.cpu()
        h_new = shift_to_logit(h, head.fc.weight, head.fc.bias, pair_target[idx])
        x_new = flow.inverse(h_new, zs, 0, head.after_layer + 1)
        _, _, measured = encode(flow, head, x_new)
        outside = ((x_new < 0) | (x_new > 1)).flatten(1).to(dtype).mean(1)
        out_images.append((x_new.clamp(0, 1) if clip else x_new).cpu())
        out_logits.append(measured.cpu())
        out_clipped.append(outside.cpu())
    shape = images.shape[1:]
    return Counterfactuals(
        images=torch.cat(out_images).reshape(n, t, *shape),
        targets=targets.cpu(),
        logits=torch.cat(out_logits).reshape(n, t),
        original_logits=original,
        clipped_fraction=torch.cat(out_clipped).reshape(n, t),
    )
