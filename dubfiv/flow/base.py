"""The interface of an invertible layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FlowLayer", "Shape", "logdet_dtype", "zero_logdet"]

Shape = tuple[int, int, int]
"""A per-sample tensor shape ``(C, H, W)``."""


class FlowLayer(nn.Module):
    """Base of the invertible layers of :class:`~dubfiv.flow.SequentialFlow`.

    Subclasses implement ``forward`` (returning the output and the per-sample
    log-determinant) and ``inverse``. Layers with data-dependent initialisation
    override :meth:`data_init`. A layer states its output shape in one place,
    :meth:`shape_rule` (layers that change the shape override it and
    :meth:`shape_options`); :meth:`output_shape`, the model builder's plan and the
    state-dict inference all ask it (``docs/flow.md``, "Shapes").
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

    @classmethod
    def shape_rule(cls, input_shape: Shape, **options: Any) -> Shape:
        """Per-sample output shape ``(C, H, W)`` of a layer of this class built with
        ``options`` (its constructor arguments besides the channel count, as in
        ``LayerInfo.options``), without building it. Default: unchanged.

        Raises:
            ValueError: the layer cannot take ``input_shape``.
        """
        return (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))

    def shape_options(self) -> dict[str, Any]:
        """The options :meth:`shape_rule` needs for this layer (default: none)."""
        return {}

    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape ``(C, H, W)`` of this layer for an input shape."""
        return self.shape_rule(input_shape, **self.shape_options())


def logdet_dtype(x: Tensor) -> torch.dtype:
    """Dtype of log-determinants for activations ``x``: at least float32 (also under AMP)."""
    return torch.promote_types(x.dtype, torch.float32)


def zero_logdet(x: Tensor) -> Tensor:
    """A ``[B]`` zero log-determinant for the batch ``x`` (device of ``x``, >= float32)."""
    return torch.zeros(x.shape[0], device=x.device, dtype=logdet_dtype(x))
