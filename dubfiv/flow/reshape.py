"""Parameter-free layers that change the shape: space-to-depth and the channel split."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from dubfiv.flow.base import FlowLayer, Shape, zero_logdet

__all__ = ["SpaceToDepth", "Split", "split_channels"]


class SpaceToDepth(FlowLayer):
    """``[B, C, H, W] -> [B, f*f*C, H/f, W/f]`` with sub-pixel-major channel order.

    Output channel ``k * C + c`` holds input channel ``c`` at sub-pixel
    ``k = f * dy + dx`` (``f = factor``, 2 in all configs). This is
    ``torch.nn.functional.pixel_unshuffle`` (channel-major, ``c * f*f + k``) with
    the channels permuted; the order is the released checkpoint's. log|det| = 0.
    """

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"space-to-depth factor must be >= 2, got {factor}")
        self.factor = factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"

    @classmethod
    def shape_rule(cls, input_shape: Shape, factor: int = 2, **_: Any) -> Shape:
        """``(C, H, W) -> (f*f*C, H/f, W/f)``.

        Raises:
            ValueError: ``H`` or ``W`` is not divisible by ``f``.
        """
        c, h, w = input_shape
        f = factor
        if f < 1 or h % f or w % f:
            raise ValueError(
                f"space-to-depth by {f} needs height and width divisible by {f}, got {h}x{w}"
            )
        return (c * f * f, h // f, w // f)

    def shape_options(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, H, W]`` -> ``([B, f*f*C, H/f, W/f], zeros [B])``."""
        b, c, h, w = x.shape
        f = self.factor
        self.output_shape((c, h, w))
        y = x.reshape(b, c, h // f, f, w // f, f).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(b, f * f * c, h // f, w // f), zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        """``[B, f*f*C, H/f, W/f]`` -> ``[B, C, H, W]``."""
        b, cff, h, w = y.shape
        f = self.factor
        c = cff // (f * f)
        x = y.reshape(b, f, f, c, h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(b, c, h * f, w * f)


def split_channels(channels: int, channels_to_keep: Literal["half"] | int) -> int:
    """Number of channels a :class:`Split` keeps out of ``channels``.

    ``"half"`` keeps ``channels // 2`` (the rest, ``channels - channels // 2``, is
    faded out); an integer keeps that many and must be in ``[1, channels - 1]``.
    """
    if channels_to_keep == "half":
        keep = channels // 2
    elif isinstance(channels_to_keep, int) and not isinstance(channels_to_keep, bool):
        keep = channels_to_keep
    else:
        raise ValueError(f"channels_to_keep must be 'half' or an integer, got {channels_to_keep!r}")
    if not 1 <= keep < channels:
        raise ValueError(
            f"a split of {channels} channels must keep between 1 and {channels - 1}, got {keep}"
        )
    return keep


class Split(nn.Module):
    """Fades out channels as a latent: ``x [B, C, H, W] -> (kept, z)``.

    ``kept`` is the first ``k`` channels (:func:`split_channels`), ``z`` the rest.
    Not a :class:`FlowLayer`: its forward returns the latent instead of a
    log-determinant (which is 0).
    """

    def __init__(self, channels_to_keep: Literal["half"] | int = "half") -> None:
        super().__init__()
        self.channels_to_keep = channels_to_keep

    def extra_repr(self) -> str:
        return f"channels_to_keep={self.channels_to_keep!r}"

    def n_keep(self, channels: int) -> int:
        """Channels kept of an input with ``channels`` channels."""
        return split_channels(channels, self.channels_to_keep)

    @classmethod
    def shape_rule(cls, input_shape: Shape, channels_to_keep: Literal["half"] | int = "half",
                   **_: Any) -> Shape:
        """``(C, H, W) -> (k, H, W)``, ``k`` from :func:`split_channels`.

        Raises:
            ValueError: the split would keep no or all channels.
        """
        c, h, w = input_shape
        return (split_channels(c, channels_to_keep), h, w)

    @classmethod
    def latent_rule(cls, input_shape: Shape, channels_to_keep: Literal["half"] | int = "half",
                    **_: Any) -> Shape:
        """Shape ``(C - k, H, W)`` of the faded-out latent ``z``."""
        c, h, w = input_shape
        return (c - split_channels(c, channels_to_keep), h, w)

    def shape_options(self) -> dict[str, Any]:
        return {"channels_to_keep": self.channels_to_keep}

    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape ``(k, H, W)`` of the kept channels."""
        return self.shape_rule(input_shape, **self.shape_options())

    def latent_shape(self, input_shape: Shape) -> Shape:
        """Shape ``(C - k, H, W)`` of the faded-out latent ``z``."""
        return self.latent_rule(input_shape, **self.shape_options())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, H, W]`` -> ``(kept [B, k, H, W], z [B, C - k, H, W])``."""
        k = self.n_keep(x.shape[1])
        kept, z = x.split([k, x.shape[1] - k], dim=1)
        return kept, z

    def inverse(self, kept: Tensor, z: Tensor) -> Tensor:
        """Concatenate ``kept`` and ``z`` along channels."""
        return torch.cat([kept, z], dim=1)
