"""``dubfiv_dataset_configs``: write a family of dataset TOMLs over a grid of bias
parameters or split sizes (see :mod:`dubfiv.workflow.dataset_configs`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dubfiv.cli._oneline import OneLineParser, guarded

PROG = "dubfiv_dataset_configs"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Write one dataset TOML per point of a grid over sampler parameters "
        "(obj_color_slope, obj_color_uniform_prob, spherical_uniform_prob, ...) or split "
        "sizes (train.n_samples, ...). File and dataset folder names say what varies. "
        "Render each with `python -m two4two FILE`.",
        epilog="Examples: --name finer_search --config config/dataset_config.toml "
        "--output_dir config/finer_search;  --name slope_sweep --config "
        "config/dataset_small.toml --output_dir configs --grid obj_color_slope=1,2.5,5 "
        "--grid train.n_samples=200,400",
    )
    parser.add_argument("--list", action="store_true",
                        help="show the built-in generators with their grids and exit")
    parser.add_argument("--name", metavar="GENERATOR",
                        help="a built-in generator (see --list), or the name of your own "
                        "family (then --grid/--grid_file are required; NAME starts the names)")
    parser.add_argument("--config", metavar="BASE.toml",
                        help="the base dataset TOML (one [[dataset]]); everything not varied "
                        "is copied from it")
    parser.add_argument("--output_dir", metavar="DIR", help="where the TOML files are written")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a grid axis (repeatable): a sampler parameter or "
                        "<split>.n_samples; replaces a generator's values for the same key")
    parser.add_argument("--grid_file", metavar="GRID.toml",
                        help="grid axes from a TOML: [grid] key = [values], optional "
                        "[labels] key = \"word used in names\"")
    parser.add_argument("--data_dir", metavar="DIR",
                        help="parent folder of the variants' datasets (default: that of the "
                        "base's output_dir)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing files with other content")
    parser.add_argument("--dry_run", action="store_true",
                        help="validate and print the files, write nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.workflow.dataset_configs import (
        build_variants,
        describe_generators,
        write_variants,
    )

    if args.list:
        print(describe_generators())
        return 0
    missing = [flag for flag, value in (("--name", args.name), ("--config", args.config),
                                        ("--output_dir", args.output_dir)) if value is None]
    if missing:
        parser.error(f"{', '.join(missing)} required (or --list)")

    def run() -> int:
        variants = build_variants(args.config, args.name, args.output_dir, args.grid,
                                  args.grid_file, args.data_dir)
        if not args.dry_run:
            write_variants(variants, force=args.force)
        verb = "would write" if args.dry_run else "wrote"
        print(f"{verb} {len(variants)} dataset configs:", file=sys.stderr)
        for variant in variants:
            print(variant.path)
        return 0

    return guarded(PROG, parser, run, also=(OSError,), base_config="--config",
                   grid_args="--grid")


if __name__ == "__main__":
    sys.exit(main())
