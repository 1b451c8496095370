"""Infer a flow's architecture from a state dict (released checkpoints without a usable TOML).

Rules (each layer ``i`` owns the keys ``layers.i.*``):

* keys ``s, b``                         -> ``ActNorm`` with ``C = s.shape[1]``;
* keys ``p, l, u, l_mask, u_mask``      -> ``InvConv1x1`` with ``C = l.shape[0]``;
* keys ``_block.*``                     -> ``AffineCoupling``: ``conv1.weight`` is
  ``[width, C // 2, k, k]`` (``k = 1``: the 1x1 net, ``k = 3``: the 3x3 net with
  ``actnorm1/2``); ``conv3.weight`` has ``2 * (C - C // 2)`` output channels
  (affine) or ``C - C // 2`` (additive);
* no keys                               -> a parameter-free layer. A run of ``g``
  such layers between channel counts ``C_in`` and ``C_out`` (the next
  parameterised layer's) is resolved to a sequence of ``Split`` and
  ``SpaceToDepth`` (factor 2) layers that maps ``C_in`` to ``C_out`` with valid
  spatial sizes. Preferred: every Split keeps ``"half"``; failing that, exactly
  one Split with an integer ``channels_to_keep``. Among several fits the one
  that puts Splits first wins (the ``fade_out_and_pool`` order: Split, then
  pool). For the paper's model this gives ``SpaceToDepth`` at layer 0 and
  ``Split("half"), SpaceToDepth`` at the start of every later stage.

The run of parameter-free layers must be followed by an ActNorm or a 1x1 conv
(as :func:`~dubfiv.flow.build_flow` always does); the last layer is the one
with the highest index that has keys.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from torch import Tensor

from dubfiv.config import ConfigError, FadeOutAndPool, FlowBlocks, LayerConfig, ModelConfig
from dubfiv.flow.base import Shape
from dubfiv.flow.builder import FINAL_GROUP, LayerInfo, build_layer, layer_shapes, plan_layers
from dubfiv.flow.sequential import SequentialFlow
from dubfiv.released import RELEASED_MODEL

__all__ = [
    "StateDictLayoutError",
    "flow_from_state_dict",
    "infer_layers",
    "model_config_from_state_dict",
    "strip_module_prefix",
]

IN_CHANNELS = RELEASED_MODEL.in_channels
IMAGE_SIZE = RELEASED_MODEL.image_size
"""Default input of the inference: the released model's (``docs/released_model.md``)."""

_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")
_INVCONV_KEYS = {"p", "l", "u", "l_mask", "u_mask"}
_MAX_GAP = 8


class StateDictLayoutError(ConfigError):
    """The state dict does not have the released layout (the message names the key)."""


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state_dict`` without the ``module.`` that a DistributedDataParallel wrapper puts
    before every key (unchanged if not every key has it)."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):  # saved from a DDP wrapper
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _group_keys(state_dict: Mapping[str, Tensor]) -> dict[int, dict[str, Tensor]]:
    by_layer: dict[int, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if match is None:
            raise StateDictLayoutError(
                f"state dict key {key!r} is not of the form 'layers.<index>.<name>'"
            )
        by_layer.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if not by_layer:
        raise StateDictLayoutError("state dict has no 'layers.<index>.*' keys")
    return by_layer


def _channels_of(params: Mapping[str, Tensor]) -> int | None:
    """Input channel count of a parameterised layer (None for a coupling layer)."""
    if set(params) == {"s", "b"}:
        return int(params["s"].shape[1])
    if set(params) == _INVCONV_KEYS:
        return int(params["l"].shape[0])
    return None


def _options(kind: str, keep: str | int | None) -> dict:
    """Options of a parameter-free layer: a Split keeping ``keep``, or a 2x2 SpaceToDepth."""
    return {"channels_to_keep": keep} if kind == "Split" else {"factor": 2}


def _resolve_gap(length: int, shape: Shape, c_out: int) -> list[tuple[str, dict]] | None:
    """The sequence of parameter-free layers (kind, options) taking ``shape`` to ``c_out``."""

    def simulate(kinds: tuple[str, ...], keep_at: int | None, keep: int | None) -> bool:
        current = shape
        for j, kind in enumerate(kinds):
            try:
                current = layer_shapes(kind, current, _options(kind, keep if j == keep_at
                                                                else "half"))[0]
            except ValueError:
                return False
        return current[0] == c_out

    # product() order puts Split before SpaceToDepth at each position (preferred)
    options = list(itertools.product(("Split", "SpaceToDepth"), repeat=length))
    for kinds in options:  # all splits keep half
        if simulate(kinds, None, None):
            return [(k, _options(k, "half")) for k in kinds]
    for kinds in options:  # exactly one split with an integer keep
        if kinds.count("Split") != 1:
            continue
        j = kinds.index("Split")
        n_pool_after = kinds[j + 1:].count("SpaceToDepth")
        if c_out % 4**n_pool_after:
            continue
        keep = c_out // 4**n_pool_after
        if simulate(kinds, j, keep):
            return [(k, _options(k, keep)) for k in kinds]
    return None


def infer_layers(
    state_dict: Mapping[str, Tensor], in_channels: int = IN_CHANNELS, image_size: int = IMAGE_SIZE
) -> list[LayerInfo]:
    """The layers (as :class:`LayerInfo`, ``group`` unset) that a state dict describes.

    Raises:
        StateDictLayoutError: unknown key names, inconsistent shapes, or a run of
            parameter-free layers that no Split/SpaceToDepth sequence explains.
    """
    by_layer = _group_keys(strip_module_prefix(state_dict))
    n_layers = max(by_layer) + 1
    shape: Shape = (in_channels, image_size, image_size)
    infos: list[LayerInfo] = []

    def add(kind: str, **options: object) -> None:
        nonlocal shape
        out, latent = layer_shapes(kind, shape, options)
        infos.append(LayerInfo(len(infos), kind, out, FINAL_GROUP, shape, latent, dict(options)))
        shape = out

    i = 0
    while i < n_layers:
        params = by_layer.get(i)
        if params is None:  # a run of parameter-free layers
            j = i
            while j < n_layers and j not in by_layer:
                j += 1
            c_next = _channels_of(by_layer[j])
            if c_next is None:
                raise StateDictLayoutError(
                    f"layers {i}..{j - 1} have no parameters and are followed by layer {j}, "
                    "which is not an ActNorm or 1x1 conv; cannot infer their shapes"
                )
            if j - i > _MAX_GAP:
                raise StateDictLayoutError(f"too many parameter-free layers at {i}..{j - 1}")
            resolved = _resolve_gap(j - i, shape, c_next)
            if resolved is None:
                raise StateDictLayoutError(
                    f"no sequence of Split/SpaceToDepth layers at {i}..{j - 1} takes "
                    f"{shape} to {c_next} channels"
                )
            for kind, options in resolved:
                add(kind, **options)
            i = j
            continue
        c = shape[0]
        names = set(params)
        if names == {"s", "b"} or names == _INVCONV_KEYS:
            kind = "ActNorm" if names == {"s", "b"} else "InvConv1x1"
            if _channels_of(params) != c:
                raise StateDictLayoutError(
                    f"layer {i} ({kind}) has {_channels_of(params)} channels, expected {c}"
                )
            add(kind)
        elif all(n.startswith("_block.") for n in names):
            add("AffineCoupling", **_coupling_options(i, params, c))
        else:
            raise StateDictLayoutError(
                f"layer {i} has keys {sorted(names)}, which match no known layer"
            )
        i += 1
    return infos


def _coupling_options(index: int, params: Mapping[str, Tensor], channels: int) -> dict:
    try:
        w1, w3 = params["_block.conv1.weight"], params["_block.conv3.weight"]
    except KeyError as error:
        raise StateDictLayoutError(f"coupling layer {index} lacks key {error}") from None
    width, c_a, k = int(w1.shape[0]), int(w1.shape[1]), int(w1.shape[2])
    c_b = channels - channels // 2
    if c_a != channels // 2:
        raise StateDictLayoutError(
            f"layers.{index}._block.conv1.weight reads {c_a} channels, expected {channels // 2}"
        )
    n_out = int(w3.shape[0])
    coupling = {2 * c_b: "affine", c_b: "additive"}.get(n_out)
    if coupling is None:
        raise StateDictLayoutError(
            f"layers.{index}._block.conv3.weight has {n_out} outputs, expected {2 * c_b} or {c_b}"
        )
    expected = {f"_block.conv{n}.{p}" for n in (1, 2, 3) for p in ("weight", "bias")}
    if k == 3:
        expected |= {f"_block.actnorm{n}.{p}" for n in (1, 2) for p in ("s", "b")}
    elif k != 1:
        raise StateDictLayoutError(f"layers.{index}._block.conv1.weight has kernel {k}")
    if set(params) != expected:
        raise StateDictLayoutError(
            f"coupling layer {index} has keys {sorted(params)}, expected {sorted(expected)}"
        )
    return {"width": width, "conv_1x1_kernel": k == 1, "coupling": coupling}


def flow_from_state_dict(
    state_dict: Mapping[str, Tensor], in_channels: int = IN_CHANNELS, image_size: int = IMAGE_SIZE
) -> SequentialFlow:
    """Build the flow a state dict describes (see the module docstring) and load it.

    The weights are loaded with ``strict=True`` (ActNorms count as initialised);
    the module lives on the CPU, in the state dict's floating dtype (float32 for
    the released model) -- move it with ``.to()``. A leading
    ``module.`` (from DistributedDataParallel) is stripped.
    """
    state_dict = strip_module_prefix(state_dict)
    flow = SequentialFlow(
        build_layer(info, random_init=False)
        for info in infer_layers(state_dict, in_channels, image_size)
    )
    dtypes = {v.dtype for v in state_dict.values() if v.is_floating_point()}
    if len(dtypes) == 1:
        flow.to(dtypes.pop())
    flow.load_state_dict(state_dict, strict=True)
    return flow


def model_config_from_state_dict(
    state_dict: Mapping[str, Tensor], in_channels: int = IN_CHANNELS, image_size: int = IMAGE_SIZE
) -> ModelConfig:
    """A :class:`ModelConfig` whose :func:`~dubfiv.flow.build_flow` matches the state dict.

    Groups runs of (ActNorm, InvConv1x1, AffineCoupling) with equal options into
    ``flow_blocks``, Split/SpaceToDepth pairs into ``fade_out_and_pool``; the
    final ActNorm and 1x1 conv are implicit.

    Raises:
        StateDictLayoutError: the layers do not follow the builder's pattern.
    """
    infos = infer_layers(state_dict, in_channels, image_size)
    kinds = [info.kind for info in infos]
    if kinds[-2:] != ["ActNorm", "InvConv1x1"]:
        raise StateDictLayoutError("the last two layers are not the final ActNorm and 1x1 conv")
    body = infos[:-2]
    groups: list[LayerConfig] = []
    i = 0
    while i < len(body):
        kind = body[i].kind
        if kind in ("Split", "SpaceToDepth"):
            keep: str | int = "no_fade_out"
            if kind == "Split":
                keep = body[i].options["channels_to_keep"]
                if keep == body[i].input_shape[0] // 2:
                    keep = "half"
                i += 1
            pool = 1
            if i < len(body) and body[i].kind == "SpaceToDepth":
                pool = body[i].options["factor"]
                i += 1
            groups.append(FadeOutAndPool(channels_to_keep=keep, pool=pool))  # type: ignore[arg-type]
        elif [b.kind for b in body[i:i + 3]] == ["ActNorm", "InvConv1x1", "AffineCoupling"]:
            opts = body[i + 2].options
            previous = groups[-1] if groups else None
            if (isinstance(previous, FlowBlocks) and previous.block_channels == opts["width"]
                    and previous.conv_1x1_kernel == opts["conv_1x1_kernel"]
                    and previous.coupling == opts["coupling"]):
                previous.n_blocks += 1
            else:
                groups.append(FlowBlocks(n_blocks=1, block_channels=opts["width"],
                                         conv_1x1_kernel=opts["conv_1x1_kernel"],
                                         coupling=opts["coupling"]))
            i += 3
        else:
            raise StateDictLayoutError(
                f"layer {body[i].index} ({kind}) does not start a flow block or fade-out group"
            )
    config = ModelConfig(layers=groups, image_size=image_size, in_channels=in_channels)
    planned = [(p.kind, p.output_shape) for p in plan_layers(config)]
    if planned != [(p.kind, p.output_shape) for p in infos]:  # pragma: no cover - sanity check
        raise StateDictLayoutError("inferred config does not reproduce the state dict's layers")
    return config
