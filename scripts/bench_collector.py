#!/usr/bin/env python
"""Benchmark of the collector (``dubfiv_study_serve``) under many simultaneous participants.

Starts the real server (uvicorn, in a subprocess, on 127.0.0.1) on a small study written
to a temporary folder, lets N simulated participants take part at the same time
(asyncio + httpx: start a session, save every page -- about 20 -- plus one page twice
as a retry would, end ``finished``) and prints one table row per database: participants,
page saves, requests per second, the median and 99th percentile of a page save's
latency in ms, and the page rows in the database against those expected. SQLite (a
fresh file) always; PostgreSQL too with ``--database postgresql://...`` (e.g. the URL
``scripts/postgres_local.sh start DIR`` prints; use an empty database: the rows
counted are those of this run's participants, the balance is over all sessions).

    python scripts/bench_collector.py --participants 200
    python scripts/bench_collector.py --participants 200 --database "$(bash \\
        scripts/postgres_local.sh start /tmp/pg)"

The clients run on the same machine as the server and take about as much CPU, so on
few cores the figures are lower bounds of what the server alone manages; the server's
own CPU time per request (from /proc) is the figure least affected by that.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from dubfiv.study.collector import open_store
from dubfiv.study.collector.loadtest import (
    LoadResult,
    ServerProcess,
    run_load,
    simulated_pages,
    write_load_study,
)
from dubfiv.study.collector.store import shown_url

HEADER = (f"{'database':<10} {'participants':>12} {'page saves':>10} {'requests/s':>10} "
          f"{'save p50 ms':>11} {'save p99 ms':>11} {'server CPU ms/req':>17} "
          f"{'rows stored/expected':>20} {'errors':>6}")


def bench(study_dir: Path, database: str, participants: int
          ) -> tuple[LoadResult, float, int, int]:
    """Run the load against a server on ``database``; the result, the server's CPU
    milliseconds per request, the page rows of this run's participants in the database,
    and the rows expected."""
    study = write_load_study(study_dir)
    with ServerProcess(study_dir, database) as server:
        cpu_before = server.cpu_seconds()
        result = run_load(server.url, study, participants, timeout_s=120)
        cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / max(1, result.requests)
    store = open_store(database)
    try:
        counts = store.page_counts()
    finally:
        store.close()
    stored = sum(counts.get(p, 0) for p in result.participant_ids)
    return result, cpu_ms, stored, participants * len(simulated_pages(study))


def row(name: str, result: LoadResult, cpu_ms: float, stored: int, expected: int) -> str:
    return (f"{name:<10} {result.participants:>12} {result.page_saves:>10} "
            f"{result.requests_per_s:>10.0f} {result.save_percentile_ms(50):>11.0f} "
            f"{result.save_percentile_ms(99):>11.0f} {cpu_ms:>17.2f} "
            f"{f'{stored}/{expected}':>20} {len(result.errors):>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=200,
                        help="simultaneous participants (default: 200)")
    parser.add_argument("--database", default=None, metavar="URL",
                        help="also run against this PostgreSQL database (SQLAlchemy URL)")
    args = parser.parse_args(argv)
    if args.participants < 1:
        parser.error("--participants must be at least 1")
    failed = False
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        pages = len(simulated_pages(write_load_study(Path(tmp) / "count")))
        print(f"{os.cpu_count()} CPUs; {args.participants} participants at once, {pages} "
              "pages each (+1 saved twice)")
        print(HEADER)
        runs = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.sqlite'}")]
        if args.database:
            runs.append(("postgresql", args.database))
        for name, url in runs:
            try:
                result, cpu_ms, stored, expected = bench(Path(tmp) / name, url,
                                                         args.participants)
            except Exception as error:  # report the run and go on with the next database
                print(f"{name:<10} failed on {shown_url(url)}: {error}")
                failed = True
                continue
            print(row(name, result, cpu_ms, stored, expected), flush=True)
            for line in result.errors[:5]:
                print(f"  {line}")
            failed |= bool(result.errors) or stored != expected
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
