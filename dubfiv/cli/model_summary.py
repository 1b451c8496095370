"""``dubfiv_model_summary CONFIG_OR_RUN_DIR``: layers, parameters, stage shapes, heads."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from dubfiv.cli._oneline import OneLineParser, fail, flags_of

PROG = "dubfiv_model_summary"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Summarise a model: number of layers and parameters, each stage's output "
        "shape, and each head's layer index and input features. No weights are allocated.",
    )
    parser.add_argument("source", metavar="CONFIG_OR_RUN_DIR",
                        help="an experiment TOML or a run directory (ours or the paper's)")
    parser.add_argument("--image_size", type=int, metavar="N",
                        help="summarise at this input size instead of model.image_size")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (keys n_layers, n_parameters, heads, "
                        "stages, ...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.errors import DubfivError
    from dubfiv.summary import experiment_of, format_summary, summarize

    try:
        experiment, source = experiment_of(args.source)
        summary = summarize(experiment, args.image_size)
    except DubfivError as error:
        return fail(PROG, error, flags=flags_of(parser, config_or_run_dir="CONFIG_OR_RUN_DIR"))
    print(json.dumps(summary) if args.json else format_summary(summary, source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
