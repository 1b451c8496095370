"""Torchvision CNNs by name, built without downloaded weights, for the supervised baseline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dubfiv.errors import DubfivError

__all__ = [
    "SupervisedError",
    "build_model",
    "classification_models",
    "network_input",
    "parse_model_kwargs",
    "resize_images",
]


class SupervisedError(DubfivError, RuntimeError):
    """Bad input to the supervised baseline (the message names the flag/file and the fix)."""


def classification_models() -> list[str]:
    """Names of torchvision's image-classification models (``mobilenet_v2``, ``resnet18``, ...)."""
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def parse_model_kwargs(text: str | None) -> dict[str, Any]:
    """``--model_kwargs`` (a JSON object such as ``'{"width_mult": 0.5}'``) -> dict.

    Raises:
        SupervisedError: not valid JSON, or not an object.
    """
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SupervisedError(f"`model_kwargs` {text!r} is not valid JSON ({error.msg} at "
                              f"character {error.pos}); write e.g. "
                              "'{\"width_mult\": 0.5}'") from None
    if not isinstance(value, dict):
        raise SupervisedError(f"`model_kwargs` {text!r} must be a JSON object such as "
                              "'{\"width_mult\": 0.5}'")
    return value


def build_model(
    name: str,
    kwargs: Mapping[str, Any] | None,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=n_outputs, **kwargs)``.

    Randomly initialised; pretrained weights are never downloaded. With
    ``image_shape`` ``(C, H, W)`` a dry run on two blank images checks that the
    model accepts that size and returns ``[2, n_outputs]``.

    Raises:
        SupervisedError: unknown name (the message lists the valid ones), kwargs
            the model does not take, a ``weights`` kwarg, or an image size the
            model cannot process.
    """
    import torchvision.models

    kwargs = dict(kwargs or {})
    names = classification_models()
    if name not in names:
        raise SupervisedError(f"`model_name` {name!r} is not a torchvision classification "
                              f"model; choose one of: {', '.join(names)}")
    for key in ("weights", "num_classes", "pretrained", "weights_backbone"):
        if key in kwargs:
            raise SupervisedError(f"`model_kwargs`: {key!r} is not allowed (the model is "
                                  "trained from scratch; num_classes is set from the targets)")
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=n_outputs, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise SupervisedError(f"`model_kwargs` {json.dumps(kwargs)} do not fit torchvision's "
                              f"{name}: {error}") from None
    if image_shape is not None:
        model.eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(2, *image_shape))
        except (RuntimeError, ValueError, AssertionError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SupervisedError(f"`model_name` {name} cannot process {tuple(image_shape)} "
                                  f"images ({first}); choose another model") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_outputs):
            raise SupervisedError(f"`model_name` {name} returns {type(out).__name__} "
                                  f"{getattr(out, 'shape', '')} instead of logits [B, "
                                  f"{n_outputs}]; choose another model")
        model.train()
    return model


def resize_images(images: torch.Tensor, size: tuple[int, int] | Sequence[int]) -> torch.Tensor:
    """Resize float images ``[B, C, H, W]`` to ``size`` ``(H', W')`` (bilinear, antialiased
    when shrinking); the identity if the size already matches."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True)


def network_input(images: torch.Tensor, size: tuple[int, int] | Sequence[int]) -> torch.Tensor:
    """Images ``[B, C, H, W]`` (uint8, or floats in [0, 1]) -> the CNN's input: float
    ``2 x - 1`` with ``x = k / 255``, resized to ``size``."""
    from dubfiv.data import to_unit

    return resize_images(to_unit(images), size) * 2 - 1
