"""The sequential invertible network: layers indexed from 0, run between any two indices."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from typing import cast

import torch
from torch import Tensor, nn

from dubfiv.flow.actnorm import ActNorm
from dubfiv.flow.base import FlowLayer, Shape, logdet_dtype
from dubfiv.flow.invconv import InvConv1x1
from dubfiv.flow.reshape import Split

__all__ = ["FINAL_KEY", "FlowOutput", "SequentialFlow"]

FINAL_KEY = -1
"""Key of the final output ``h`` in :meth:`SequentialFlow.latent_shapes`."""


@dataclasses.dataclass
class FlowOutput:
    """Result of :meth:`SequentialFlow.forward`.

    Attributes:
        h: output of the last layer run, ``[B, C, H, W]``.
        zs: latents faded out by the Split layers that ran, keyed by the Split's
            layer index, each ``[B, C_z, H_z, W_z]``.
        logdet: ``[B]``, sum of log|det J| (nats) of the layers that ran.
        activations: output of layer ``i`` for each requested ``i`` (for a Split,
            the kept channels).
    """

    h: Tensor
    zs: dict[int, Tensor]
    logdet: Tensor
    activations: dict[int, Tensor]


class SequentialFlow(nn.Module):
    """A list of invertible layers (:class:`FlowLayer` or :class:`Split`).

    ``layers[i]`` is layer ``i`` of ``docs/flow.md`` (state-dict keys ``layers.i.*``).
    Parameter-free layers keep their index.
    """

    fold_actnorm: bool = True
    """Run an ActNorm and the 1x1 conv after it as one convolution in a training
    step (:meth:`_folds_into_next`); ``False`` runs every layer on its own."""

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, FlowLayer | Split):
                raise TypeError(f"layer {i} is {type(layer).__name__}, not a FlowLayer or Split")

    def __len__(self) -> int:
        return len(self.layers)

    def _range(self, start: int, end: int | None) -> tuple[int, int]:
        n = len(self.layers)
        end = n if end is None else end
        if not 0 <= start <= end <= n:
            raise IndexError(f"layer range [{start}, {end}) is not within [0, {n}]")
        return start, end

    # ------------------------------------------------------------------ forward / inverse

    def forward(
        self,
        x: Tensor,
        start: int = 0,
        end: int | None = None,
        capture: Collection[int] = (),
    ) -> FlowOutput:
        """Run layers ``start .. end - 1`` on ``x`` (the input of layer ``start``).

        Args:
            x: ``[B, C, H, W]``; the image in [0, 1] when ``start == 0``.
            start: first layer to run.
            end: one past the last layer to run (``None``: all layers).
            capture: layer indices whose outputs to return in ``activations``
                (indices outside the range are ignored).

        Returns:
            :class:`FlowOutput` with ``h`` the output of layer ``end - 1`` (``x``
            itself for an empty range), the faded-out latents, the summed
            log-determinant ``[B]`` and the captured activations.

        In a training step (training mode, gradients enabled) an ActNorm and the
        1x1 conv after it run as one convolution (the same result up to rounding)
        unless the ActNorm's output is captured.
        """
        start, end = self._range(start, end)
        capture = set(capture)
        zs: dict[int, Tensor] = {}
        activations: dict[int, Tensor] = {}
        logdet = torch.zeros(x.shape[0], device=x.device, dtype=logdet_dtype(x))
        h = x
        i = start
        while i < end:
            layer = self.layers[i]
            if isinstance(layer, Split):
                h, zs[i] = layer(h)
            elif i + 1 < end and i not in capture and self._folds_into_next(i):
                # ActNorm i folded into the 1x1 conv i + 1 (InvConv1x1.forward_affine)
                actnorm = cast(ActNorm, layer)
                conv = cast(InvConv1x1, self.layers[i + 1])
                actnorm_logdet = actnorm.logdet(h)
                h, conv_logdet = conv.forward_affine(h, actnorm.s, actnorm.b)
                logdet = logdet + actnorm_logdet + conv_logdet
                i += 1
            else:
                h, layer_logdet = layer(h)
                logdet = logdet + layer_logdet
            if i in capture:
                activations[i] = h
            i += 1
        return FlowOutput(h=h, zs=zs, logdet=logdet, activations=activations)

    def _folds_into_next(self, i: int) -> bool:
        """Whether :meth:`forward` runs layers ``i`` and ``i + 1`` as one convolution
        (:meth:`InvConv1x1.forward_affine`): an :class:`ActNorm` directly followed by
        an :class:`InvConv1x1` (exact types) in a training step (training mode with
        gradients; the fold saves mostly backward passes). Otherwise every layer
        runs on its own, so forward passes over any range give identical numbers."""
        return (self.fold_actnorm and self.training and torch.is_grad_enabled()
                and type(self.layers[i]) is ActNorm and i + 1 < len(self.layers)
                and type(self.layers[i + 1]) is InvConv1x1)

    def inverse(
        self,
        h: Tensor,
        zs: Mapping[int, Tensor],
        start: int = 0,
        end: int | None = None,
    ) -> Tensor:
        """Invert layers ``end - 1`` down to ``start``.

        Args:
            h: the output of layer ``end - 1``, ``[B, C, H, W]``.
            zs: the latent of every Split layer in ``[start, end)``, keyed by index.
            start, end: the layer range, as in :meth:`forward`.

        Returns:
            The input of layer ``start`` (the image when ``start == 0``).
        """
        start, end = self._range(start, end)
        for i in range(end - 1, start - 1, -1):
            layer = self.layers[i]
            if isinstance(layer, Split):
                if i not in zs:
                    raise KeyError(f"inverse through Split layer {i} needs zs[{i}]")
                h = layer.inverse(h, zs[i])
            else:
                h = layer.inverse(h)
        return h

    # ------------------------------------------------------------------ initialisation

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Data-dependent init of every ActNorm, in one pass, layer by layer.

        Each layer is initialised on its input as produced by the already
        initialised layers before it (ActNorms inside coupling nets included).

        Args:
            x: an initialisation batch ``[B, C, H, W]`` (images in [0, 1]).
        """
        h = x
        for layer in self.layers:
            if isinstance(layer, Split):
                h, _ = layer(h)
            else:
                layer.data_init(h)
                h, _ = layer(h)

    @property
    def initialized(self) -> bool:
        """Whether every ActNorm has been data-initialised (or loaded)."""
        return all(m.initialized for m in self.modules() if isinstance(m, ActNorm))

    # ------------------------------------------------------------------ shapes

    def output_shapes(self, input_shape: Shape) -> list[Shape]:
        """Per-layer output shape ``(C, H, W)`` for a per-sample input shape (arithmetic)."""
        shapes = []
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)  # type: ignore[operator]
            shapes.append(shape)
        return shapes  # type: ignore[return-value]

    def latent_shapes(self, input_shape: Shape) -> dict[int, Shape]:
        """Shapes of all latents: each Split's ``z`` by its index, and the final
        ``h`` under :data:`FINAL_KEY` (``-1``). Their sizes sum to ``C * H * W``."""
        shapes: dict[int, Shape] = {}
        shape = tuple(input_shape)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Split):
                shapes[i] = layer.latent_shape(shape)  # type: ignore[arg-type]
            shape = layer.output_shape(shape)  # type: ignore[operator]
        shapes[FINAL_KEY] = shape  # type: ignore[assignment]
        return shapes

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float,
        input_shape: Shape,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``n`` images: all latents from N(0, temperature^2), then invert.

        Args:
            n: number of samples.
            temperature: standard deviation of the latents.
            input_shape: per-sample image shape ``(C, H, W)``.
            generator: optional generator (on the model's device).

        Returns:
            ``[n, C, H, W]`` on the model's device and dtype.
        """
        ref = next(self.parameters(), None)
        device = ref.device if ref is not None else torch.device("cpu")
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        latents = {
            key: temperature
            * torch.randn((n, *shape), generator=generator, device=device, dtype=dtype)
            for key, shape in self.latent_shapes(input_shape).items()
        }
        h = latents.pop(FINAL_KEY)
        return self.inverse(h, latents)
