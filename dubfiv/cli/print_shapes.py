"""``dubfiv_print_shapes CONFIG_OR_RUN_DIR``: each layer's index, type and output shape."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from dubfiv.cli._oneline import OneLineParser, fail, flags_of

PROG = "dubfiv_print_shapes"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Print every layer of a model: its index (what `after_layer` refers to), "
        "its type and its output shape (C x H x W). A per-layer view of dubfiv_model_summary.",
    )
    parser.add_argument("source", metavar="CONFIG_OR_RUN_DIR",
                        help="an experiment TOML or a run directory")
    parser.add_argument("--image_size", type=int, metavar="N",
                        help="shapes at this input size instead of model.image_size")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {index, kind, output_shape}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.errors import DubfivError
    from dubfiv.summary import experiment_of, format_layers, layer_table

    try:
        experiment, _ = experiment_of(args.source)
        rows = layer_table(experiment, args.image_size)
    except DubfivError as error:
        return fail(PROG, error, flags=flags_of(parser, config_or_run_dir="CONFIG_OR_RUN_DIR"))
    print(json.dumps(rows) if args.json else format_layers(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
