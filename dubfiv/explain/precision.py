"""Full float32 precision on CUDA while explanations run.

PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) on Ampere and newer
GPUs by default. A counterfactual runs the flow forward, inverts it and re-encodes
the result; with TF32 the re-encoded logit can miss its target by far more than
float32 rounding. :func:`full_precision` turns TF32 off for the duration of a
block and restores the previous settings afterwards (no effect on the CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["full_precision"]


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Disable TF32 for cuDNN convolutions and CUDA matmuls inside the block."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
