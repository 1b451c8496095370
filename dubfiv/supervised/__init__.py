"""The supervised CNN baseline: a torchvision model that reads every scene attribute.

Trained on the (unbiased) Two4Two dataset with ``dubfiv_supervised``; used by
``dubfiv_supervised_analysis`` to read the attributes of the INN's
counterfactuals (:mod:`dubfiv.supervised.analysis`).
"""

from dubfiv.supervised.inference import SupervisedModel, load_supervised
from dubfiv.supervised.metrics import accuracy, attribute_metrics, constant_baseline, r2_score
from dubfiv.supervised.model import (
    SupervisedError,
    build_model,
    classification_models,
    network_input,
    parse_model_kwargs,
    resize_images,
)
from dubfiv.supervised.targets import TargetSpec, fit_target_spec
from dubfiv.supervised.train import SupervisedConfig, evaluate_split, train_supervised

__all__ = [
    "SupervisedConfig",
    "SupervisedError",
    "SupervisedModel",
    "TargetSpec",
    "accuracy",
    "attribute_metrics",
    "build_model",
    "classification_models",
    "constant_baseline",
    "evaluate_split",
    "fit_target_spec",
    "load_supervised",
    "network_input",
    "parse_model_kwargs",
    "r2_score",
    "resize_images",
    "train_supervised",
]
