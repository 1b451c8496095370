"""Build a :class:`SequentialFlow` from a :class:`~dubfiv.config.ModelConfig`.

Layer order (``docs/flow.md``), for each configured layer group in turn:

* ``fade_out_and_pool``: a ``Split`` layer unless ``channels_to_keep ==
  "no_fade_out"``, then a ``SpaceToDepth`` layer unless ``pool == 1``;
* ``flow_blocks``: ``n_blocks`` x (``ActNorm``, ``InvConv1x1``, ``AffineCoupling``);

then a final ``ActNorm`` and a final ``InvConv1x1``. :func:`plan_layers` lists
the layers without building anything, each layer's shape from its class's
:meth:`~dubfiv.flow.FlowLayer.shape_rule` (:func:`layer_shapes`);
:func:`build_flow` instantiates the plan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from dubfiv.config import ConfigError, FadeOutAndPool, FlowBlocks, ModelConfig
from dubfiv.flow.actnorm import ActNorm
from dubfiv.flow.base import Shape
from dubfiv.flow.coupling import AffineCoupling
from dubfiv.flow.invconv import InvConv1x1
from dubfiv.flow.reshape import SpaceToDepth, Split
from dubfiv.flow.sequential import SequentialFlow

__all__ = ["FINAL_GROUP", "LAYER_TYPES", "LayerInfo", "build_flow", "build_layer",
           "describe_layers", "layer_shapes", "plan_layers"]

LAYER_TYPES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (Split, SpaceToDepth, ActNorm, InvConv1x1, AffineCoupling)}
"""The layer classes by ``LayerInfo.kind``."""

FINAL_GROUP = -1
"""``LayerInfo.group`` of the final ActNorm and 1x1 conv (not from a config group)."""


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One layer of a model, without weights.

    Attributes:
        index: layer index (``after_layer`` refers to it).
        kind: class name: ``Split``, ``SpaceToDepth``, ``ActNorm``, ``InvConv1x1``
            or ``AffineCoupling``.
        output_shape: per-sample output ``(C, H, W)``; for a Split the kept part.
        group: index into ``ModelConfig.layers`` of the group that added the
            layer, :data:`FINAL_GROUP` for the final ActNorm and 1x1 conv.
        input_shape: per-sample input ``(C, H, W)``.
        latent_shape: shape of the faded-out latent (Split only, else ``None``).
        options: constructor arguments besides the channel count (``factor``,
            ``channels_to_keep``, ``width``, ``conv_1x1_kernel``, ``coupling``).
    """

    index: int
    kind: str
    output_shape: Shape
    group: int = FINAL_GROUP
    input_shape: Shape = (0, 0, 0)
    latent_shape: Shape | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """``C * H * W`` of the output (a linear head's input size)."""
        c, h, w = self.output_shape
        return c * h * w


def layer_shapes(kind: str, input_shape: Shape,
                 options: dict[str, Any]) -> tuple[Shape, Shape | None]:
    """``(output shape, latent shape or None)`` of a layer of ``kind`` built with ``options``,
    as its class states them (no layer is built).

    Raises:
        KeyError: unknown ``kind``; ValueError: the layer cannot take ``input_shape``.
    """
    cls = LAYER_TYPES[kind]
    out = cls.shape_rule(input_shape, **options)  # type: ignore[attr-defined]
    latent = cls.latent_rule(input_shape, **options) if cls is Split else None
    return out, latent


def _error(group: int, message: str) -> ConfigError:
    return ConfigError(f"model config: key 'layers[{group}]': {message}")


def plan_layers(model: ModelConfig) -> list[LayerInfo]:
    """Every layer of ``model`` with its shapes, by arithmetic only.

    Raises:
        ConfigError: a shape does not work out (odd image size before a pool, a
            split that keeps no or all channels, a coupling on 1 channel, ...).
    """
    if model.in_channels < 1 or model.image_size < 1:
        raise ConfigError(
            "model config: in_channels and image_size must be positive, got "
            f"{model.in_channels} and {model.image_size}"
        )
    shape: Shape = (model.in_channels, model.image_size, model.image_size)
    infos: list[LayerInfo] = []

    def add(kind: str, group: int, **options: Any) -> None:
        nonlocal shape
        out, latent = layer_shapes(kind, shape, options)
        infos.append(LayerInfo(len(infos), kind, out, group, shape, latent, options))
        shape = out

    for g, group in enumerate(model.layers):
        if isinstance(group, FadeOutAndPool):
            if group.channels_to_keep != "no_fade_out":
                try:
                    add("Split", g, channels_to_keep=group.channels_to_keep)
                except ValueError as error:
                    raise _error(g, f"channels_to_keep: {error}") from None
            if group.pool != 1:
                try:
                    add("SpaceToDepth", g, factor=group.pool)
                except ValueError as error:
                    raise _error(g, f"pool={group.pool}: {error}; change image_size or the "
                                 "number of pooling stages") from None
        elif isinstance(group, FlowBlocks):
            if group.n_blocks < 0 or group.block_channels < 1:
                raise _error(g, "n_blocks must be >= 0 and block_channels >= 1")
            if group.n_blocks and shape[0] < 2:
                raise _error(g, f"coupling layers need at least 2 channels, got {shape[0]}")
            for _ in range(group.n_blocks):
                add("ActNorm", g)
                add("InvConv1x1", g)
                add("AffineCoupling", g, width=group.block_channels,
                    conv_1x1_kernel=group.conv_1x1_kernel, coupling=group.coupling)
        else:  # pragma: no cover - config parsing rules this out
            raise _error(g, f"unknown layer group {group!r}")
    add("ActNorm", FINAL_GROUP)
    add("InvConv1x1", FINAL_GROUP)
    return infos


def describe_layers(model_config: ModelConfig) -> list[LayerInfo]:
    """Alias of :func:`plan_layers` for summaries (no weights are built)."""
    return plan_layers(model_config)


def build_layer(info: LayerInfo, random_init: bool = True) -> nn.Module:
    """Instantiate the layer described by ``info``.

    ``random_init=False`` skips the (slow) random orthogonal init of 1x1 convs,
    for weights that are loaded right after.
    """
    c = info.input_shape[0]
    if info.kind == "Split":
        return Split(info.options["channels_to_keep"])
    if info.kind == "SpaceToDepth":
        return SpaceToDepth(info.options.get("factor", 2))
    if info.kind == "InvConv1x1":
        return InvConv1x1(c, random_init=random_init)
    if info.kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer kind {info.kind!r}")
    return LAYER_TYPES[info.kind](c, **info.options)


def build_flow(model: ModelConfig, random_init: bool = True) -> SequentialFlow:
    """The invertible network of ``model``.

    Args:
        model: the model config.
        random_init: ``True``: orthogonal 1x1 convs (torch's global RNG), coupling
            nets as documented, ActNorms waiting for :meth:`SequentialFlow.data_init`.
            ``False``: identity 1x1 convs, for weights loaded right after (faster).

    Raises:
        ConfigError: the shapes of the config do not work out (see :func:`plan_layers`).
    """
    return SequentialFlow(build_layer(info, random_init) for info in plan_layers(model))
