"""ActNorm: a per-channel affine map with data-dependent initialisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dubfiv.flow.base import FlowLayer

__all__ = ["ActNorm"]


class ActNorm(FlowLayer):
    """``y = s * x + b`` per channel; ``s``, ``b``: parameters ``[1, C, 1, 1]``.

    :meth:`data_init` sets ``s = 1 / std`` and ``b = -mean / std`` over the
    batch and the pixels of ``x``, so that the initialisation batch comes out
    with zero mean and unit (population) standard deviation per channel.
    ``initialized`` is a plain attribute (not in the state dict); loading a
    state dict that holds ``s`` and ``b`` marks the layer initialised.

    log|det| = H * W * sum_c log|s_c| per sample.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.s = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.initialized = False

    def extra_repr(self) -> str:
        return f"{self.channels}, initialized={self.initialized}"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, H, W]`` -> ``(s * x + b, logdet [B])``."""
        y = torch.addcmul(self.b, self.s, x)
        return y, self.logdet(x)

    def affine(self, x: Tensor) -> Tensor:
        """Only ``s * x + b`` (no log-determinant); used inside coupling nets."""
        return torch.addcmul(self.b, self.s, x)

    def logdet(self, x: Tensor) -> Tensor:
        """``H * W * sum log|s|`` expanded to ``[B]`` (float32 or float64)."""
        s = self.s.to(torch.promote_types(self.s.dtype, torch.float32))
        per_sample = s.abs().log().sum() * (x.shape[2] * x.shape[3])
        return per_sample.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        """``(y - b) / s``."""
        return (y - self.b) / self.s

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Zero mean and unit std per channel on the batch ``x`` ``[B, C, H, W]``."""
        x = x.detach()
        dims = (0, 2, 3)
        mean = x.mean(dim=dims, keepdim=True)
        std = (x - mean).pow(2).mean(dim=dims, keepdim=True).sqrt()
        scale = 1.0 / std.clamp_min(self.eps)
        self.s.copy_(scale)
        self.b.copy_(-mean * scale)
        self.initialized = True

    def _load_from_state_dict(
        self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]
        if prefix + "s" in state_dict and prefix + "b" in state_dict:
            self.initialized = True
