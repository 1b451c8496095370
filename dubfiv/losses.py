"""Losses: negative log-likelihood in bits per dimension, and the heads' BCE."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor

from dubfiv.errors import ParameterError

__all__ = ["PIXEL_BIN_WIDTH", "PIXEL_LEVELS", "bits_per_dim", "gaussian_log_prob", "head_bce"]

_LOG_2PI = math.log(2 * math.pi)

PIXEL_LEVELS: Final = 255
"""The data's scaling: :func:`dubfiv.data.to_unit` maps an 8-bit value ``k`` to
``k / PIXEL_LEVELS`` in [0, 1] (a test keeps the two in step)."""

PIXEL_BIN_WIDTH: Final = 1.0 / PIXEL_LEVELS
"""Distance between adjacent 8-bit values in the model's input units: the width of
the bin whose probability bits/dim reports (``docs/flow.md``, "Bits per dimension")."""


def gaussian_log_prob(x: Tensor) -> Tensor:
    """Per-sample log-density of ``x`` ``[B, ...]`` under a standard normal (nats), ``[B]``."""
    x = x.flatten(1)
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    return -0.5 * (x.pow(2).sum(1) + x.shape[1] * _LOG_2PI)


def bits_per_dim(
    h: Tensor,
    zs: Mapping[int, Tensor] | Iterable[Tensor],
    logdet: Tensor,
    n_dims: int,
    bin_width: float = PIXEL_BIN_WIDTH,
) -> Tensor:
    """Negative log-likelihood of dequantised 8-bit images in bits per dimension.

    ``nll = -(log N(h) + sum_z log N(z)) - logdet - n_dims * log(bin_width)``,
    divided by ``n_dims * ln 2``. The last term turns the density of the
    dequantised image into the probability of its bins, each ``bin_width`` wide
    per dimension: the data's bin width 1/255 (:data:`PIXEL_BIN_WIDTH`) adds
    ``log2(255)`` bits per dimension, as the paper's code does; ``bin_width =
    1/256`` gives the other common convention, ``log2(256/255)`` = 0.00565
    bits/dim higher.

    Args:
        h: final flow output ``[B, ...]``.
        zs: the faded-out latents (a mapping such as ``FlowOutput.zs`` or any
            iterable of ``[B, ...]`` tensors).
        logdet: ``[B]``, summed log|det J| of the flow (nats).
        n_dims: dimensions of one image, ``C * H * W``.
        bin_width: width of one quantisation bin in the input's units (> 0).

    Raises:
        ValueError: the latents do not add up to ``n_dims``, or ``bin_width <= 0``.

    Returns:
        ``[B]`` bits per dimension.
    """
    latents = zs.values() if isinstance(zs, Mapping) else zs
    log_prob = gaussian_log_prob(h)
    n_latent = h[0].numel()
    for z in latents:
        log_prob = log_prob + gaussian_log_prob(z)
        n_latent += z[0].numel()
    if n_latent != n_dims:
        raise ValueError(f"latents have {n_latent} dimensions per sample, n_dims is {n_dims}")
    if not bin_width > 0:
        raise ParameterError(f"`bin_width` must be positive, got {bin_width}", "bin_width")
    nll = -log_prob - logdet - n_dims * math.log(bin_width)
    return nll / (n_dims * math.log(2.0))


def head_bce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean binary cross-entropy of a head's ``logits`` ``[B]`` against ``labels`` ``[B]``
    (0/1, any dtype; label noise is applied before, :func:`dubfiv.data.apply_label_noise`).

    Returns a scalar (nats per sample).
    """
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
