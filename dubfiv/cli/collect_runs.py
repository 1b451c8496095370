"""``dubfiv_collect_runs``: one table (CSV + printed summary) of many runs, or the command
lines that process each run (see :mod:`dubfiv.workflow.collect_runs`)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dubfiv.cli import _args
from dubfiv.cli._oneline import OneLineParser, fail, flags_of, in_flags

if TYPE_CHECKING:
    from dubfiv.workflow.collect_runs import RunRecord

PROG = "dubfiv_collect_runs"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Collect training runs into one table: the config keys that differ "
        "between them, samples seen, training time, validation bits/dim (final and best), "
        "head accuracy per split (validation from the history; other splits from the "
        "analysis cache, which --evaluate fills), and ground-truth relevance per attribute where "
        "ground_truth/ground_truth.json exists. Runs that cannot be read are listed with "
        "the reason. With --command, print instead the command line that processes each run.",
    )
    parser.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_PARENT",
                        help="run directories, or folders holding them (searched 3 levels deep)")
    parser.add_argument("--csv", metavar="OUT.csv", help="write the whole table as CSV")
    parser.add_argument("--command", choices=["export", "ground_truth"],
                        help="print one command line per readable run instead of the table: "
                        "dubfiv_export_user_study or dubfiv_ground_truth")
    parser.add_argument("--output_base", default="exports", metavar="DIR",
                        help="--command export: the study goes to DIR/<run name> "
                        "(default: %(default)s)")
    parser.add_argument("--dataset_dir", metavar="DIR",
                        help="--evaluate and --command ground_truth: the folder holding the "
                        "datasets (default: each run's train.dataset_dir)")
    parser.add_argument("--evaluate", action="store_true",
                        help="first evaluate each run's head on (up to 3,000 images of) the "
                        "validation and test splits, cached in the run's analysis_cache/, so "
                        "the table has test accuracy (a forward pass per image: slow for big "
                        "models on a CPU)")
    _args.add_device(parser, help_prefix="--evaluate: ")
    parser.add_argument("--only_missing", action="store_true",
                        help="--command: skip runs whose output exists already")
    parser.add_argument("--verify", action="store_true",
                        help="also rebuild each model from its weights (slow for big models)")
    return parser


def ground_truth_command(record: RunRecord, dataset_dir: str | None = None) -> str:
    """``dubfiv_ground_truth --model RUN --dataset_dir DIR --dataset NAME`` for a run
    (the run's ``train.dataset_dir`` unless ``dataset_dir`` is given)."""
    from dubfiv.workflow.collect_runs import run_setting

    parts = ["dubfiv_ground_truth", "--model", str(record.path)]
    folder = dataset_dir or run_setting(record, "dataset_dir")
    name = run_setting(record, "dataset")
    if folder:
        parts += ["--dataset_dir", folder]
    if name:
        parts += ["--dataset", name]
    return shlex.join(parts)


def export_command(record: RunRecord, output_base: str | os.PathLike) -> str:
    """``dubfiv_export_user_study --model RUN --output <output_base>/<run name>``."""
    return shlex.join(["dubfiv_export_user_study", "--model", str(record.path), "--output",
                       str(Path(output_base) / record.path.name)])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 if no run could be read)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.errors import DubfivError
    from dubfiv.rundir import GROUND_TRUTH_REPORT
    from dubfiv.workflow.collect_runs import collect, format_summary, write_csv

    flags = flags_of(parser, paths="RUN_DIR_OR_PARENT")
    records = collect(args.paths, verify=args.verify, evaluate=args.evaluate,
                      dataset_dir=args.dataset_dir, device=args.device)
    if args.csv:
        try:
            write_csv(records, args.csv)
        except (DubfivError, OSError) as error:
            return fail(PROG, f"--csv {args.csv}: {error}", flags=flags)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.command is None:
        print(in_flags(format_summary(records), flags))
    else:
        for record in records:
            if not record.ok:
                print(f"# skipped {record.path}: {in_flags(str(record.error), flags)}",
                      file=sys.stderr)
            elif args.command == "ground_truth":
                if not (args.only_missing and (record.path / GROUND_TRUTH_REPORT).is_file()):
                    print(ground_truth_command(record, args.dataset_dir))
            elif not (args.only_missing and (Path(args.output_base) / record.path.name).exists()):
                print(export_command(record, args.output_base))
    if not any(record.ok for record in records):
        return fail(PROG, "no run could be read (see the reasons above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
