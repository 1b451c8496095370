"""Affine (or additive) coupling layer and its coupling CNN."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dubfiv.flow.actnorm import ActNorm
from dubfiv.flow.base import FlowLayer, logdet_dtype

__all__ = ["AffineCoupling", "CouplingNet", "affine_scale"]


class _FromChannelsLast(torch.autograd.Function):
    """``x.contiguous()`` of a channels-last ``x``, whose gradient goes back channels-last
    (autograd's own would hand the default layout to the convolutions' backward,
    which then mixes layouts in every pass)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.contiguous()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def affine_scale(raw: Tensor) -> Tensor:
    """The coupling scale ``sigmoid(raw) + 0.5``, in (0.5, 1.5)."""
    return torch.sigmoid(raw) + 0.5


class CouplingNet(nn.Module):
    """The CNN of a coupling layer: ``[B, c_in, H, W] -> [B, c_out, H, W]``.

    ``conv_1x1_kernel=False``: conv3x3(c_in -> width) -> ActNorm -> ReLU ->
    conv1x1(width -> width) -> ActNorm -> ReLU -> conv3x3(width -> c_out), zero
    padding, the last conv initialised to zero.
    ``conv_1x1_kernel=True``: three 1x1 convs with ReLUs and no ActNorm, the last
    conv initialised to 0.01 x torch's default initialisation.
    Submodule names (``conv1, actnorm1, conv2, actnorm2, conv3``) are the
    released checkpoint's state-dict keys.

    In training mode on the CPU, on inputs of at least
    :attr:`channels_last_min_pixels` pixels the net runs in channels-last memory
    layout (input and output stay in the default layout): there the CPU's 3x3
    convolutions with few channels run up to several times faster. The result
    equals the default layout's up to rounding; forward and inverse of a coupling
    layer in the same mode take the same path.
    """

    channels_last_min_pixels: int = 256
    """Smallest ``H * W`` run in channels-last layout (training mode, CPU); 0: never.
    Measured on 2 CPU threads (``scripts/bench_flow.py``): faster from 16x16 up,
    slower below."""

    def __init__(self, c_in: int, width: int, c_out: int, conv_1x1_kernel: bool = False) -> None:
        super().__init__()
        self.conv_1x1_kernel = conv_1x1_kernel
        k, pad = (1, 0) if conv_1x1_kernel else (3, 1)
        self.conv1 = nn.Conv2d(c_in, width, k, padding=pad)
        if not conv_1x1_kernel:
            self.actnorm1 = ActNorm(width)
        self.conv2 = nn.Conv2d(width, width, 1)
        if not conv_1x1_kernel:
            self.actnorm2 = ActNorm(width)
        self.conv3 = nn.Conv2d(width, c_out, k, padding=pad)
        with torch.no_grad():
            if conv_1x1_kernel:
                self.conv3.weight.mul_(0.01)
                self.conv3.bias.mul_(0.01)
            else:
                self.conv3.weight.zero_()
                self.conv3.bias.zero_()

    @staticmethod
    def _conv_actnorm(conv: nn.Conv2d, actnorm: ActNorm, x: Tensor) -> Tensor:
        """``actnorm(conv(x))`` as one conv: ``s * (W x + c) + b = (s W) x + (s c + b)``.

        Folding the per-channel scale into the weight replaces elementwise passes
        over the hidden activation (and their backward) by passes over the weight;
        done when the activation is the larger of the two (B*H*W > fan-in).
        """
        if x.shape[0] * x.shape[2] * x.shape[3] <= conv.weight[0].numel():
            return actnorm.affine(conv(x))
        s = actnorm.s.view(-1)
        weight = conv.weight * s.view(-1, 1, 1, 1)
        bias = torch.addcmul(actnorm.b.view(-1), s, conv.bias)
        return F.conv2d(x, weight, bias, padding=conv.padding)

    def _channels_last(self, x: Tensor) -> bool:
        """Whether :meth:`forward` runs ``x`` in channels-last layout."""
        return (self.training and x.device.type == "cpu" and self.channels_last_min_pixels > 0
                and x.shape[2] * x.shape[3] >= self.channels_last_min_pixels)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, c_in, H, W]`` -> ``[B, c_out, H, W]`` (contiguous)."""
        channels_last = self._channels_last(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.conv_1x1_kernel:
            h = F.relu(self.conv1(x))
            h = F.relu(self.conv2(h))
        else:
            h = F.relu(self._conv_actnorm(self.conv1, self.actnorm1, x))
            h = F.relu(self._conv_actnorm(self.conv2, self.actnorm2, h))
        out = self.conv3(h)
        return _FromChannelsLast.apply(out) if channels_last else out

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Initialise both ActNorms in order on the activations of ``x`` (3x3 net only)."""
        if self.conv_1x1_kernel:
            return
        h = self.conv1(x)
        self.actnorm1.data_init(h)
        h = F.relu(self.actnorm1.affine(h))
        h = self.conv2(h)
        self.actnorm2.data_init(h)


class AffineCoupling(FlowLayer):
    """Coupling layer on ``[B, C, H, W]``: ``x = (x_a, x_b)`` with ``x_a`` the first
    ``C // 2`` channels and ``x_b`` the remaining ``C - C // 2``.

    ``affine``: ``s, t = split(net(x_a))`` (first half ``s``, second half ``t``),
    ``y_b = (sigmoid(s) + 0.5) * x_b + t``, log|det| = sum log(scale).
    ``additive``: the net outputs only ``t`` (``C - C // 2`` channels),
    ``y_b = x_b + t``, log|det| = 0. ``y_a = x_a`` in both cases.
    """

    def __init__(
        self,
        channels: int,
        width: int,
        conv_1x1_kernel: bool = False,
        coupling: Literal["affine", "additive"] = "affine",
    ) -> None:
        super().__init__()
        if coupling not in ("affine", "additive"):
            raise ValueError(f"coupling must be 'affine' or 'additive', got {coupling!r}")
        if channels < 2:
            raise ValueError(f"a coupling layer needs at least 2 channels, got {channels}")
        self.channels = channels
        self.coupling = coupling
        self.c_a = channels // 2
        self.c_b = channels - self.c_a
        c_out = 2 * self.c_b if coupling == "affine" else self.c_b
        self._block = CouplingNet(self.c_a, width, c_out, conv_1x1_kernel)

    def extra_repr(self) -> str:
        return f"{self.channels}, coupling={self.coupling!r}"

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # split (not slicing): its backward concatenates instead of zero-filling
        x_a, x_b = x.split([self.c_a, self.c_b], dim=1)
        return x_a, x_b

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, H, W]`` -> ``(y, logdet [B])``."""
        x_a, x_b = self._split(x)
        out = self._block(x_a)
        if self.coupling == "additive":
            y_b = x_b + out
            logdet = torch.zeros(x.shape[0], device=x.device, dtype=logdet_dtype(x))
        else:
            raw, t = out.split(self.c_b, dim=1)
            scale = affine_scale(raw)
            y_b = torch.addcmul(t, scale, x_b)
            logdet = scale.to(logdet_dtype(scale)).log().flatten(1).sum(1)
        return torch.cat([x_a, y_b], dim=1), logdet

    def inverse(self, y: Tensor) -> Tensor:
        """``x_b = (y_b - t) / scale`` (or ``y_b - t``)."""
        y_a, y_b = self._split(y)
        out = self._block(y_a)
        if self.coupling == "additive":
            x_b = y_b - out
        else:
            raw, t = out.split(self.c_b, dim=1)
            x_b = (y_b - t) / affine_scale(raw)
        return torch.cat([y_a, x_b], dim=1)

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Initialise the ActNorms of the coupling net on ``x_a`` of the batch ``x``."""
        self._block.data_init(self._split(x)[0])
