"""The interface of an invertible layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FlowLayer", "Shape", "logdet_dtype", "zero_logdet"]

Shape = tuple[int, int, int]
"""A per-sample tensor shape ``(C, H, W)``."""


class FlowLayer(nn.Module):
    """Base of the invertible layers of :class:`~dubfiv.flow.SequentialFlow`.

    Subclasses implement ``forward`` (returning the output and the per-sample
    log-determinant) and ``inverse``. Layers with data-dependent initialisation
    override :meth:`data_init`; layers that change the shape override
    :meth:`output_shape`.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Map ``x`` ``[B, C, H, W]`` to ``(y, logdet)``.

        Returns:
            ``y`` (the layer output) and ``logdet`` ``[B]``, ``log|det dy/dx|``
            per sample in nats.
        """
        raise NotImplementedError

    def inverse(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The exact inverse of :meth:`forward`: ``inverse(forward(x)[0]) == x``."""
        raise NotImplementedError

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Data-dependent initialisation on the layer's input ``x`` (default: none)."""

    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape ``(C, H, W)`` for an input shape (default: unchanged)."""
        return tuple(input_shape)  # type: ignore[return-value]


def logdet_dtype(x: Tensor) -> torch.dtype:
    """Dtype of log-determinants for activations ``x``: at least float32 (also under AMP)."""
    return torch.promote_types(x.dtype, torch.float32)


def zero_logdet(x: Tensor) -> Tensor:
    """A ``[B]`` zero log-determinant for the batch ``x`` (device of ``x``, >= float32)."""
    return torch.zeros(x.shape[0], device=x.device, dtype=logdet_dtype(x))
