"""``dubfiv_model_summary CONFIG_OR_RUN_DIR``: layers, parameters, stage shapes, heads."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dubfiv.cli._oneline import OneLineParser, guarded

PROG = "dubfiv_model_summary"


def source_parser(prog: str, description: str, size_help: str, json_help: str) -> OneLineParser:
    """The parser of a command that describes a model: ``CONFIG_OR_RUN_DIR``,
    ``--image_size N`` and ``--json``."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("source", metavar="CONFIG_OR_RUN_DIR",
                        help="an experiment TOML or a run directory (ours or the paper's)")
    parser.add_argument("--image_size", type=int, metavar="N", help=size_help)
    parser.add_argument("--json", action="store_true", help=json_help)
    return parser


def describe(prog: str, parser: OneLineParser, argv: Sequence[str] | None,
             table: Callable[[Any, int | None], Any], text: Callable[[Any, str], str]) -> int:
    """Parse ``argv``, compute ``table(experiment, image_size)`` of the source and print it
    as JSON or as ``text(result, source)``; the exit status."""
    args = parser.parse_args(argv)

    def run() -> int:
        from dubfiv.summary import experiment_of

        experiment, source = experiment_of(args.source)
        result = table(experiment, args.image_size)
        print(json.dumps(result) if args.json else text(result, source))
        return 0

    return guarded(prog, parser, run, config_or_run_dir="CONFIG_OR_RUN_DIR")


def build_parser() -> OneLineParser:
    return source_parser(
        PROG, "Summarise a model: number of layers and parameters, each stage's output "
        "shape, and each head's layer index and input features. No weights are allocated.",
        "summarise at this input size instead of model.image_size",
        "print one JSON object (keys n_layers, n_parameters, heads, stages, ...)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from dubfiv.summary import format_summary, summarize

    return describe(PROG, build_parser(), argv, summarize, format_summary)


if __name__ == "__main__":
    sys.exit(main())
