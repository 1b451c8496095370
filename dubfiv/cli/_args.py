"""Flags that several commands share, spelled and explained the same everywhere."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_dataset", "add_device", "add_head", "add_run"]

RUN_HELP = "run directory (ours or the paper's released model)"


def add_run(parser: argparse.ArgumentParser, help: str = RUN_HELP, **kwargs: Any) -> None:
    """``--model RUN_DIR`` (required): the run a command works on."""
    parser.add_argument("--model", required=True, metavar="RUN_DIR", help=help, **kwargs)


def add_dataset(parser: argparse.ArgumentParser, name: bool = True, **kwargs: Any) -> None:
    """``--dataset_dir DIR`` and (with ``name``) ``--dataset NAME``, defaulting to the run's."""
    parser.add_argument("--dataset_dir", metavar="DIR", help="folder holding the run's dataset "
                        "(default: the run's train.dataset_dir)", **kwargs)
    if name:
        parser.add_argument("--dataset", metavar="NAME",
                            help="dataset name (default: the run's train.dataset)")


def add_device(parser: argparse.ArgumentParser, help_prefix: str = "") -> None:
    """``--device cuda|cpu`` (default: CUDA when available)."""
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help=f"{help_prefix}device (default: cuda when available, else cpu)")


def add_head(parser: argparse.ArgumentParser) -> None:
    """``--head N``: which of the run's heads."""
    parser.add_argument("--head", type=int, default=0, help="index of the head (default: 0)")
