"""Losses: negative log-likelihood in bits per dimension, and the heads' BCE."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from dubfiv.errors import ParameterError

__all__ = ["bits_per_dim", "gaussian_log_prob", "head_bce", "noisy_labels"]

_LOG_2PI = math.log(2 * math.pi)


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
) -> Tensor:
    """Negative log-likelihood of dequantised 8-bit images in bits per dimension.

    ``nll = -(log N(h) + sum_z log N(z)) - logdet + n_dims * log(256)``, divided
    by ``n_dims * ln 2``. The ``log(256)`` term converts the density of images
    scaled to [0, 1] to the probability of a 1/256-wide bin.

    Args:
        h: final flow output ``[B, ...]``.
        zs: the faded-out latents (a mapping such as ``FlowOutput.zs`` or any
            iterable of ``[B, ...]`` tensors).
        logdet: ``[B]``, summed log|det J| of the flow (nats).
        n_dims: dimensions of one image, ``C * H * W``.

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
    nll = -log_prob - logdet + n_dims * math.log(256.0)
    return nll / (n_dims * math.log(2.0))


def noisy_labels(
    labels: Tensor, label_noise: float, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each label by a random bit with probability ``label_noise``.

    Args:
        labels: ``[B]`` binary labels (0/1, any dtype).
        label_noise: probability in [0, 1].
        generator: optional generator on ``labels``' device.

    Returns:
        ``[B]`` float labels.
    """
    if not 0.0 <= label_noise <= 1.0:
        raise ParameterError(f"`label_noise` must be in [0, 1], got {label_noise}")
    labels = labels.float()
    if label_noise == 0.0:
        return labels
    replace = torch.rand(labels.shape, generator=generator, device=labels.device) < label_noise
    bits = torch.randint(0, 2, labels.shape, generator=generator, device=labels.device).float()
    return torch.where(replace, bits, labels)


def head_bce(
    logits: Tensor,
    labels: Tensor,
    label_noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean binary cross-entropy of a head's ``logits`` ``[B]`` against ``labels`` ``[B]``.

    With ``label_noise > 0`` each label is first replaced by a random bit with
    that probability (:func:`noisy_labels`). Returns a scalar (nats per sample).
    """
    targets = noisy_labels(labels, label_noise, generator).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets)
