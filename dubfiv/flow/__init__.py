"""Invertible layers, the sequential flow, and building it from a config or a state dict.

Public API::

    FlowLayer, ActNorm, InvConv1x1, AffineCoupling, CouplingNet, SpaceToDepth, Split
    SequentialFlow, FlowOutput, FINAL_KEY
    build_flow, describe_layers, plan_layers, layer_shapes, LayerInfo, FINAL_GROUP
    flow_from_state_dict, infer_layers, model_config_from_state_dict, StateDictLayoutError,
    strip_module_prefix
"""

from dubfiv.flow.actnorm import ActNorm
from dubfiv.flow.base import FlowLayer, Shape
from dubfiv.flow.builder import (
    FINAL_GROUP,
    LayerInfo,
    build_flow,
    build_layer,
    describe_layers,
    layer_shapes,
    plan_layers,
)
from dubfiv.flow.coupling import AffineCoupling, CouplingNet, affine_scale
from dubfiv.flow.infer import (
    StateDictLayoutError,
    flow_from_state_dict,
    infer_layers,
    model_config_from_state_dict,
    strip_module_prefix,
)
from dubfiv.flow.invconv import InvConv1x1
from dubfiv.flow.reshape import SpaceToDepth, Split, split_channels
from dubfiv.flow.sequential import FINAL_KEY, FlowOutput, SequentialFlow

__all__ = [
    "FINAL_GROUP",
    "FINAL_KEY",
    "ActNorm",
    "AffineCoupling",
    "CouplingNet",
    "FlowLayer",
    "FlowOutput",
    "InvConv1x1",
    "LayerInfo",
    "SequentialFlow",
    "Shape",
    "SpaceToDepth",
    "Split",
    "StateDictLayoutError",
    "affine_scale",
    "build_flow",
    "build_layer",
    "describe_layers",
    "flow_from_state_dict",
    "infer_layers",
    "layer_shapes",
    "model_config_from_state_dict",
    "plan_layers",
    "split_channels",
    "strip_module_prefix",
]
