"""The trained module (flow + heads in one ``nn.Module``) and optimiser construction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from dubfiv import losses
from dubfiv.config import ClassifierConfig, ExperimentConfig, OptimizerConfig
from dubfiv.errors import ParameterError
from dubfiv.flow import SequentialFlow, build_flow
from dubfiv.heads import build_heads

__all__ = ["FlowWithHeads", "build_model", "check_inverse", "make_optimizer"]


class FlowWithHeads(nn.Module):
    """The invertible network and its linear heads, trained together.

    One module, so that ``DistributedDataParallel`` sees every parameter.
    ``forward(x)`` returns the per-sample bits/dim ``[B]`` and the heads' logits
    ``[B, n_heads]``.

    A head whose ``backpropagate_loss`` is false reads a detached activation,
    so its loss does not reach the flow.
    """

    def __init__(
        self, flow: SequentialFlow, heads: nn.ModuleList, classifiers: Sequence[ClassifierConfig]
    ) -> None:
        super().__init__()
        self.flow = flow
        self.heads = heads
        self.detach = [not c.backpropagate_loss for c in classifiers]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, C, H, W]`` in [0, 1] -> (bits/dim ``[B]``, logits ``[B, n_heads]``)."""
        capture = {head.after_layer for head in self.heads}
        out = self.flow(x, capture=capture)
        bpd = losses.bits_per_dim(out.h, out.zs, out.logdet, x[0].numel())
        logits = []
        for head, detach in zip(self.heads, self.detach, strict=True):
            h = out.activations[head.after_layer]
            h = h.detach() if detach else h
            logit = head(h)
            logits.append(logit.to(torch.promote_types(logit.dtype, torch.float32)))
        if not logits:
            return bpd, bpd.new_zeros((x.shape[0], 0))
        return bpd, torch.stack(logits, dim=1)


def build_model(config: ExperimentConfig) -> FlowWithHeads:
    """Flow and heads of ``config`` (heads checked against the model's layer shapes)."""
    flow = build_flow(config.model)
    heads = build_heads(config.classifiers, config.model)
    return FlowWithHeads(flow, heads, config.classifiers)


def make_optimizer(
    params: Iterable[nn.Parameter], config: OptimizerConfig
) -> torch.optim.Optimizer:
    """A torch optimiser as ``config`` states (the schedule sets its learning rate per step)."""
    params = list(params)
    if config.name == "adam":
        betas = (float(config.betas[0]), float(config.betas[1]))
        try:  # one fused kernel for all parameters: Adam's step is 2-3x faster on the CPU
            return torch.optim.Adam(params, lr=config.lr, betas=betas,
                                    weight_decay=config.weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a torch or device without fused Adam
            return torch.optim.Adam(params, lr=config.lr, betas=betas,
                                    weight_decay=config.weight_decay)
    if config.name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    raise ParameterError(f"unknown optimizer {config.name!r}; use adam or sgd")


@torch.no_grad()
def check_inverse(flow: SequentialFlow, x: Tensor, tolerance: float) -> tuple[float, int | None]:
    """Max ``|x - inverse(forward(x))|`` and, if above ``tolerance``, the first bad layer.

    Args:
        flow: the network.
        x: a batch ``[B, C, H, W]``.
        tolerance: largest acceptable absolute error.

    Returns:
        ``(error, layer)``: ``layer`` is the index of the first layer whose own
        inverse misses by more than ``tolerance`` (``None`` if all invert).
    """
    out = flow(x)
    error = (flow.inverse(out.h, out.zs) - x).abs().max().item()
    if error <= tolerance:
        return error, None
    h = x
    for i in range(len(flow.layers)):
        step = flow(h, start=i, end=i + 1)
        back = flow.inverse(step.h, step.zs, start=i, end=i + 1)
        if not (back - h).abs().max().item() <= tolerance:
            return error, i
        h = step.h
    return error, None
