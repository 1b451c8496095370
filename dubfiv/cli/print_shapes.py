"""``dubfiv_print_shapes CONFIG_OR_RUN_DIR``: each layer's index, type and output shape."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dubfiv.cli._oneline import OneLineParser
from dubfiv.cli.model_summary import describe, source_parser

PROG = "dubfiv_print_shapes"


def build_parser() -> OneLineParser:
    return source_parser(
        PROG, "Print every layer of a model: its index (what `after_layer` refers to), its "
        "type and its output shape (C x H x W). A per-layer view of dubfiv_model_summary.",
        "shapes at this input size instead of model.image_size",
        "print a JSON list of {index, kind, output_shape}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from dubfiv.summary import format_layers, layer_table

    return describe(PROG, build_parser(), argv, layer_table,
                    lambda rows, _source: format_layers(rows))


if __name__ == "__main__":
    sys.exit(main())
