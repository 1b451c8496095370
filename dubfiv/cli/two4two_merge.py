"""``dubfiv_two4two_merge``: merge rendered Two4Two datasets split by split
(see :mod:`dubfiv.workflow.merge`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dubfiv.cli._oneline import OneLineParser, run_main

PROG = "dubfiv_two4two_merge"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Merge rendered Two4Two datasets split by split: parameters.jsonl "
        "concatenated in the order given, images hard-linked (copied where the file system "
        "cannot link), scene ids checked to be unique, intervention splits kept aligned with "
        "their original split by original_id. A split that only some datasets have is "
        "merged from those (and reported; --strict refuses it); an intervention split that "
        "only some datasets have then covers only their originals. The merge is built in a "
        "temporary folder beside DIR and renamed into place.",
    )
    parser.add_argument("--destination", required=True, metavar="DIR",
                        help="the merged dataset folder (must not exist or be empty, "
                        "unless --force)")
    parser.add_argument("--datasets", required=True, nargs="+", metavar="DATASET_DIR",
                        help="two or more dataset folders (holding train/, test/, ...)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--copy", action="store_const", dest="mode", const="copy",
                     help="copy the images (default: hard links, copies where impossible)")
    how.add_argument("--link", "--symlink", action="store_const", dest="mode",
                     const="symlink",
                     help="symbolic links (absolute) to the images instead of hard links")
    parser.add_argument("--tar", action="store_true",
                        help="also pack DIR.tar.gz (top folder DIR's name; unpack into data/)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty destination (and DIR.tar.gz)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse splits that not every dataset has")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(mode="hardlink")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_main(PROG, build_parser(), argv, _run, also=(OSError,), sources="--datasets",
                    archive="--tar")


def _run(args: argparse.Namespace) -> int:
    from dubfiv.workflow.merge import merge_datasets

    report = merge_datasets(args.destination, args.datasets, mode=args.mode, force=args.force,
                            archive=args.tar, strict=args.strict, progress=not args.quiet)
    for name, parts in report.splits.items():
        total = sum(n for _, n in parts)
        sources = ", ".join(f"{root} ({n})" for root, n in parts)
        print(f"{name}: {total} scenes from {sources}", file=sys.stderr)
    for name, missing in report.partial.items():
        print(f"note: split {name} is not in {', '.join(map(str, missing))}; merged from the "
              "others", file=sys.stderr)
    placed = ", ".join(f"{n} {how}" for how, n in report.files.items() if n)
    print(f"files: {placed or 'none'}", file=sys.stderr)
    print(report.destination)
    if report.archive is not None:
        print(report.archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
