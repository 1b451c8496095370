"""``dubfiv_collect_runs``: one table (CSV + printed summary) of many runs, or the command
lines that process each run (see :mod:`dubfiv.workflow.collect_runs`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dubfiv.cli._oneline import OneLineParser, fail

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
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help="--evaluate: device (default: cuda when available, else cpu)")
    parser.add_argument("--only_missing", action="store_true",
                        help="--command: skip runs whose output exists already")
    parser.add_argument("--verify", action="store_true",
                        help="also rebuild each model from its weights (slow for big models)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 if no run could be read)."""
    args = build_parser().parse_args(argv)
    from dubfiv.workflow import WorkflowError
    from dubfiv.workflow.collect_runs import (
        GROUND_TRUTH_FILE,
        collect,
        export_command,
        format_summary,
        ground_truth_command,
        write_csv,
    )

    records = collect(args.paths, verify=args.verify, evaluate=args.evaluate,
                      dataset_dir=args.dataset_dir, device=args.device)
    if args.csv:
        try:
            write_csv(records, args.csv)
        except (WorkflowError, OSError) as error:
            return fail(PROG, f"--csv {args.csv}: {error}")
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.command is None:
        print(format_summary(records))
    else:
        for record in records:
            if not record.ok:
                print(f"# skipped {record.path}: {record.error}", file=sys.stderr)
            elif args.command == "ground_truth":
                if not (args.only_missing and (record.path / GROUND_TRUTH_FILE).is_file()):
                    print(ground_truth_command(record, args.dataset_dir))
            elif not (args.only_missing and (Path(args.output_base) / record.path.name).exists()):
                print(export_command(record, args.output_base))
    if not any(record.ok for record in records):
        return fail(PROG, "no run could be read (see the reasons above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
