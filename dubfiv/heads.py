"""Linear interpretable heads: ``logit = w . flatten(h) + b`` on one flow layer's output."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dubfiv.config import ClassifierConfig, ConfigError, ModelConfig
from dubfiv.errors import ParameterError

__all__ = ["LinearHead", "build_heads", "check_heads"]


class LinearHead(nn.Module):
    """A linear classifier on the output of flow layer ``after_layer``.

    State-dict keys ``fc.weight`` ``[1, in_features]`` and ``fc.bias`` ``[1]``
    (the released checkpoint's layout).
    """

    def __init__(self, in_features: int, after_layer: int) -> None:
        super().__init__()
        if in_features < 1:
            raise ParameterError(f"a head needs at least 1 input feature, got {in_features}")
        self.after_layer = after_layer
        self.in_features = in_features
        self.fc = nn.Linear(in_features, 1)

    def extra_repr(self) -> str:
        return f"after_layer={self.after_layer}"

    def forward(self, h: Tensor) -> Tensor:
        """``h`` ``[B, C, H, W]`` (or ``[B, in_features]``) -> logits ``[B]``."""
        flat = h.flatten(1)
        if flat.shape[1] != self.in_features:
            raise ValueError(
                f"head after layer {self.after_layer} expects {self.in_features} features, "
                f"got {tuple(h.shape[1:])} = {flat.shape[1]}"
            )
        return self.fc(flat).squeeze(1)


def check_heads(classifiers: Sequence[ClassifierConfig], model: ModelConfig) -> list[int]:
    """Input sizes of the heads on ``model``; checks ``after_layer`` and ``in_channels``.

    A head's ``in_channels`` of 0 means "infer it"; any other value must equal
    ``C * H * W`` of layer ``after_layer``'s output.

    Returns:
        ``in_features`` of each head.

    Raises:
        ConfigError: ``after_layer`` out of range or ``in_channels`` wrong; the
            message names the classifier and the right value.
    """
    from dubfiv.flow.builder import plan_layers  # heads do not need the flow otherwise

    infos = plan_layers(model)
    sizes = []
    for i, head in enumerate(classifiers):
        if not 0 <= head.after_layer < len(infos):
            raise ConfigError(
                f"classifier config: key 'classifiers[{i}].after_layer': {head.after_layer} is "
                f"not a layer index of the model (0..{len(infos) - 1})"
            )
        n = infos[head.after_layer].n_features
        if head.in_channels not in (0, n):
            raise ConfigError(
                f"classifier config: key 'classifiers[{i}].in_channels': layer "
                f"{head.after_layer} outputs {infos[head.after_layer].output_shape} = {n} "
                f"features, not {head.in_channels}; set in_channels = {n}"
            )
        sizes.append(n)
    return sizes


def build_heads(
    classifiers: Sequence[ClassifierConfig], model: ModelConfig | None = None
) -> nn.ModuleList:
    """One :class:`LinearHead` per classifier config (in order).

    Args:
        classifiers: the ``[[classifiers]]`` configs.
        model: if given, ``after_layer``/``in_channels`` are checked against it and
            ``in_channels = 0`` is inferred (:func:`check_heads`).
    """
    if model is not None:
        sizes = check_heads(classifiers, model)
    else:
        sizes = [c.in_channels for c in classifiers]
    return nn.ModuleList(
        LinearHead(n, c.after_layer) for n, c in zip(sizes, classifiers, strict=True)
    )
