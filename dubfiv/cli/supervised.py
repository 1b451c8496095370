"""``dubfiv_supervised``: train a torchvision CNN to read every Two4Two attribute.

Example::

    dubfiv_supervised --data_output_dir models/supervised --dataset \\
        two4two_obj_color_and_spherical_finer_search_spherical_uniform_0.33_uniform_0.15_unbiased \\
        --dataset_dir data --model_name mobilenet_v2 --model_kwargs '{"width_mult": 0.5}' \\
        --batch_size 50 --num_epochs 61 --ckpt_freq 20 --device cuda
    dubfiv_supervised --data_output_dir models/supervised --resume
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dubfiv.cli import _args
from dubfiv.cli._oneline import OneLineParser, guarded

if TYPE_CHECKING:
    from dubfiv.supervised import SupervisedConfig

PROG = "dubfiv_supervised"
_NEW_RUN_FLAGS = ("dataset", "dataset_dir", "model_name", "model_kwargs", "batch_size",
                  "num_epochs", "ckpt_freq", "lr", "weight_decay", "seed", "num_workers",
                  "image_size")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Train a torchvision CNN (randomly initialised, never downloaded weights) "
        "on a Two4Two dataset to predict obj_name (BCE) and every continuous attribute (MSE "
        "on targets standardised with the training split's statistics). Writes "
        "checkpoint.pt (every --ckpt_freq epochs and at the end), history.json (validation "
        "accuracy / R^2 per attribute per epoch) and metrics.png into --data_output_dir.",
    )
    parser.add_argument("--data_output_dir", required=True, metavar="DIR",
                        help="output folder of the run (also the folder to --resume)")
    parser.add_argument("--dataset", metavar="NAME", help="dataset name (folder in --dataset_dir)")
    parser.add_argument("--dataset_dir", metavar="DIR", help="folder holding the dataset "
                        "(default: data)")
    parser.add_argument("--model_name", metavar="NAME",
                        help="torchvision model, e.g. mobilenet_v2, resnet18 (default: "
                        "mobilenet_v2)")
    parser.add_argument("--model_kwargs", metavar="JSON",
                        help="JSON object of model arguments, e.g. '{\"width_mult\": 0.5}'")
    parser.add_argument("--batch_size", type=int, help="batch size (default: 50)")
    parser.add_argument("--num_epochs", type=int, help="epochs (default: 61)")
    parser.add_argument("--ckpt_freq", type=int, help="checkpoint every N epochs (default: 20)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate, cosine decay "
                        "(default: 1e-3)")
    parser.add_argument("--weight_decay", type=float, help="AdamW weight decay (default: 1e-4)")
    parser.add_argument("--seed", type=int, help="seed of initialisation and data order "
                        "(default: 0)")
    parser.add_argument("--image_size", type=int, metavar="PIXELS",
                        help="train on images resized to PIXELS x PIXELS (default: the "
                        "dataset's size)")
    parser.add_argument("--num_workers", type=int, help="data loader processes (default: 0)")
    _args.add_device(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --data_output_dir from its checkpoint (its "
                        "settings are used; give no others)")
    parser.add_argument("--stop_after_epochs", type=int, metavar="N",
                        help="stop with a checkpoint after N epochs; continue with --resume")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _config(args: argparse.Namespace, parser: OneLineParser) -> SupervisedConfig | None:
    from dubfiv.supervised import SupervisedConfig, parse_model_kwargs

    given = {name: getattr(args, name) for name in _NEW_RUN_FLAGS
             if getattr(args, name) is not None}
    if args.resume:
        if given:
            parser.error(f"--resume takes the settings from the checkpoint; drop "
                         f"--{next(iter(given))}")
        return None
    if "dataset" not in given:
        parser.error("--dataset is required for a new run")
    given["model_kwargs"] = parse_model_kwargs(given.get("model_kwargs"))
    return SupervisedConfig(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_supervised``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.supervised import train_supervised

    def run() -> int:
        config = _config(args, parser)
        out = train_supervised(config, args.data_output_dir, device=args.device,
                               resume=args.resume, stop_after_epochs=args.stop_after_epochs,
                               progress=not args.quiet)
        print(f"wrote {out}")
        return 0

    return guarded(PROG, parser, run, output_dir="--data_output_dir")


if __name__ == "__main__":
    sys.exit(main())
