"""The device a command or a loaded run uses (one rule for training and loading)."""

from __future__ import annotations

import torch

from dubfiv.errors import DubfivError, ParameterError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None,
                   error: type[DubfivError] = ParameterError) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA if available, else the CPU; otherwise ``device``.

    Raises:
        error: CUDA was asked for but is not available (the message names `device`).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise error(f"`device` {device}: CUDA is not available here; use `device` cpu")
    return resolved
