"""`twin history`: SQL (DuckDB) over a run's tick-summary history; it takes no lock, so it is safe
during a run."""

from __future__ import annotations

import argparse

import duckdb

from twin.cli.base import Command, UsageError, console, existing_run_dir, print_rows, whole_arg
from twin.engine.history import DIR, has_history, query

DEFAULT_SQL = ("SELECT tick, time_utc, messages, reachable_hubs, dark_hubs, alerts, peak_alerts_per_s, hh_lost, "
               "hh_at_risk FROM ticks ORDER BY tick DESC LIMIT {limit}")


class HistoryCommand(Command):
    name = "history"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_dir", metavar="RUN_DIR")
        parser.add_argument("--sql", help="a SQL query over the tables `ticks` (one row per tick per branch) and "
                                          "`metrics` (branch, tick, metric, key, value); default: the last ticks")
        parser.add_argument("--limit", type=whole_arg, default=20, help="ticks shown without --sql (default 20)")
        parser.add_argument("--format", choices=("table", "csv", "json"), default="table")

    def run(self, args: argparse.Namespace) -> int:
        d = existing_run_dir(args.run_dir)
        if not has_history(d):
            raise UsageError(f"RUN_DIR: {d} has no tick history ({DIR}/; a run from before the history store?)")
        if args.limit < 1:
            raise UsageError(f"--limit: must be at least 1, got {args.limit}")
        sql = args.sql or DEFAULT_SQL.format(limit=int(args.limit))
        try:
            cols, rows = query(d, sql)
        except duckdb.Error as e:
            raise UsageError(f"--sql: {str(e).splitlines()[0]}") from None
        print_rows(cols, rows, fmt=args.format, console=console,
                   title="" if args.sql else f"{d}: the last {args.limit} ticks (tables: ticks, metrics)")
        return 0
