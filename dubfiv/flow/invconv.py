"""Invertible 1x1 convolution, parametrised by its LU decomposition."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dubfiv.flow.base import FlowLayer

__all__ = ["InvConv1x1", "random_orthogonal_lu"]


def random_orthogonal_lu(
    channels: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(p, l, u)`` ``[C, C]`` float32 with ``p @ l @ u`` a random orthogonal matrix.

    The orthogonal matrix is the Q factor of a Gaussian matrix (drawn from
    ``generator`` or torch's global generator); ``scipy.linalg.lu`` factorises it
    into a permutation ``p``, a unit lower-triangular ``l`` and an upper-triangular ``u``.
    """
    gaussian = torch.randn(channels, channels, dtype=torch.float64, generator=generator)
    q, _ = torch.linalg.qr(gaussian)
    p, l, u = scipy.linalg.lu(q.numpy())
    return (torch.from_numpy(p).float(), torch.from_numpy(l).float(),
            torch.from_numpy(u).float())


class InvConv1x1(FlowLayer):
    """``y = W x`` per pixel with ``W = p @ (l * l_mask + I) @ (u * u_mask)``.

    Buffers ``p`` (a permutation), ``l_mask`` (strictly lower triangle of ones),
    ``u_mask`` (upper triangle of ones, diagonal included); parameters ``l`` and
    ``u``; all ``[C, C]``. Orthogonal initialisation. log|det| = H * W *
    sum log|diag u| per sample. ``random_init=False`` starts at the identity
    instead (cheap; for weights that are loaded right after).

    In evaluation mode (``.eval()``) without gradients to ``l``/``u`` the products
    ``W`` and ``W^-1`` are cached. The cache is keyed on the version counters and
    storages of ``p, l, u`` and the masks, so optimiser steps, ``load_state_dict``
    and ``.to()`` invalidate it; ``train()`` clears it. The cache is not part of
    the state dict.
    """

    apply_mode: Literal["auto", "weight", "factored"] = "auto"
    """How training-mode forward passes apply ``W``: ``"weight"`` forms ``W`` (C^3)
    and runs a 1x1 conv; ``"factored"`` multiplies by ``U``, ``L``, ``p`` in turn
    (3 cheap passes, no C^3); ``"auto"`` picks the cheaper one per call."""

    def __init__(
        self, channels: int, generator: torch.Generator | None = None, random_init: bool = True
    ) -> None:
        super().__init__()
        self.channels = channels
        if random_init:
            p, l, u = random_orthogonal_lu(channels, generator)
        else:  # identity; for layers whose weights are loaded right after (saves the QR/LU)
            p, l, u = torch.eye(channels), torch.eye(channels), torch.eye(channels)
        self.register_buffer("p", p)
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("u_mask", torch.triu(torch.ones(channels, channels)))
        self.l = nn.Parameter(l)
        self.u = nn.Parameter(u)
        self._cache: tuple[tuple, Tensor, Tensor | None] | None = None
        self._perm_cache: tuple[tuple, Tensor | None] | None = None

    def extra_repr(self) -> str:
        return str(self.channels)

    # ------------------------------------------------------------------ weights

    def _factors(self) -> tuple[Tensor, Tensor]:
        """Unit lower-triangular ``L`` and upper-triangular ``U`` (``[C, C]``)."""
        lower = self.l * self.l_mask
        lower = lower + torch.eye(self.channels, device=lower.device, dtype=lower.dtype)
        return lower, self.u * self.u_mask

    def _permutation(self) -> Tensor | None:
        """Row indices ``perm`` with ``p @ M == M[perm]``, or ``None`` if ``p`` is no
        permutation matrix (then ``p`` is multiplied). Cached on ``p``'s version."""
        try:
            key: tuple | None = (self.p._version, self.p.data_ptr(), self.p.device)
        except RuntimeError:  # an inference tensor
            key = None
        if key is None or self._perm_cache is None or self._perm_cache[0] != key:
            p = self.p
            is_perm = bool(
                ((p == 0) | (p == 1)).all() and (p.sum(0) == 1).all() and (p.sum(1) == 1).all()
            )
            self._perm_cache = (key, p.argmax(dim=1) if is_perm else None)
        return self._perm_cache[1]

    def _permute_rows(self, m: Tensor, dim: int = 0) -> Tensor:
        """``p @ m`` along ``dim`` of ``m`` (a gather when ``p`` is a permutation)."""
        perm = self._permutation()
        if perm is not None:
            return m.index_select(dim, perm)
        return torch.movedim(torch.tensordot(self.p.to(m.dtype), m, dims=([1], [dim])), 0, dim)

    def _compute_weight(self) -> Tensor:
        with torch.autocast(device_type=self.l.device.type, enabled=False):
            lower, upper = self._factors()
            return self._permute_rows(lower @ upper)

    def _compute_inverse_weight(self, weight: Tensor | None = None) -> Tensor:
        # The exact inverse of the weight the forward pass uses (rounded to its
        # dtype), computed in float64: forward and inverse stay consistent to
        # rounding, which matters over hundreds of layers in float32.
        w = self._compute_weight() if weight is None else weight
        with torch.autocast(device_type=w.device.type, enabled=False):
            return torch.linalg.inv(w.to(torch.float64)).to(w.dtype)

    def _cache_key(self) -> tuple | None:
        tensors = (self.p, self.l, self.u, self.l_mask, self.u_mask)
        try:
            return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
        except RuntimeError:  # inference tensors have no version counter: do not cache
            return None

    def _can_cache(self) -> bool:
        needs_grad = self.l.requires_grad or self.u.requires_grad
        wants_param_grad = torch.is_grad_enabled() and needs_grad
        return not self.training and not wants_param_grad and self._cache_key() is not None

    def _cached(self, inverse: bool) -> Tensor:
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._compute_weight(), None)
        if not inverse:
            return self._cache[1]
        if self._cache[2] is None:
            self._cache = (key, self._cache[1], self._compute_inverse_weight(self._cache[1]))
        return self._cache[2]  # type: ignore[return-value]

    def weight(self) -> Tensor:
        """``W`` ``[C, C]`` (cached in eval mode without parameter gradients)."""
        return self._cached(False) if self._can_cache() else self._compute_weight()

    def inverse_weight(self) -> Tensor:
        """``W^-1`` ``[C, C]`` (cached in eval mode without parameter gradients)."""
        return self._cached(True) if self._can_cache() else self._compute_inverse_weight()

    def clear_cache(self) -> None:
        """Forget the cached ``W``, ``W^-1`` and permutation."""
        self._cache = None
        self._perm_cache = None

    def train(self, mode: bool = True) -> InvConv1x1:
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> InvConv1x1:
        self.clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(
        self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self.clear_cache()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ flow

    def logdet(self, x: Tensor) -> Tensor:
        """``H * W * sum log|diag u|`` expanded to ``[B]``."""
        diag = self.u.diagonal() * self.u_mask.diagonal()
        diag = diag.to(torch.promote_types(diag.dtype, torch.float32))
        return (diag.abs().log().sum() * (x.shape[2] * x.shape[3])).expand(x.shape[0])

    def _use_factors(self, x: Tensor) -> bool:
        if self.apply_mode == "weight":
            return False
        if self.apply_mode == "factored":
            return True
        # W costs C^3 (L @ U) + N C^2; the factors cost 2 N C^2 for N = B*H*W pixels
        return 2 * x.shape[0] * x.shape[2] * x.shape[3] < self.channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, H, W]`` -> ``(W x, logdet [B])``.

        Uses the (cached) ``W`` in eval mode; in training, when there are fewer
        pixels than channels (deep stages) it applies ``U``, ``L`` and ``p`` in turn
        instead of forming ``W`` (``apply_mode``).
        """
        if not self._can_cache() and self._use_factors(x):
            b, c, h, w = x.shape
            lower, upper = self._factors()
            v = torch.matmul(upper, x.reshape(b, c, h * w))
            v = self._permute_rows(torch.matmul(lower, v), dim=1)
            return v.reshape(b, c, h, w), self.logdet(x)
        w = self.weight()
        y = F.conv2d(x, w.view(self.channels, self.channels, 1, 1))
        return y, self.logdet(x)

    def forward_affine(self, x: Tensor, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
        """``W (scale * x + shift)`` and this layer's ``logdet`` ``[B]``.

        A preceding :class:`~dubfiv.flow.ActNorm` (``scale``, ``shift``: its ``s``
        and ``b``, ``[1, C, 1, 1]``) folded into the convolution where ``W`` is
        formed: ``W (s x + b) = (W diag(s)) x + W b``, so that the per-channel map
        costs ``C^2`` operations on the weight instead of a pass over the
        activation ``[B, C, H, W]`` and three more in the backward pass. Equal to
        the two layers run in turn up to rounding. Where the factors are applied
        (few pixels, :meth:`forward`) the affine map runs first as in
        ``ActNorm``: the passes are cheap there, and with the degenerate ActNorm
        statistics of few pixels a large ``W b`` would cost precision.
        """
        if not self._can_cache() and self._use_factors(x):
            return self.forward(torch.addcmul(shift, scale, x))
        c = self.channels
        weight = self.weight()
        bias = torch.matmul(weight, shift.view(c, 1)).view(c)
        weight = weight * scale.view(1, c)
        return F.conv2d(x, weight.view(c, c, 1, 1), bias), self.logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        """``W^-1 y`` per pixel."""
        w_inv = self.inverse_weight()
        return F.conv2d(y, w_inv.view(self.channels, self.channels, 1, 1))
