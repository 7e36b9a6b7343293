"""`twin history`: SQL (DuckDB) over a run's tick-summary history; it takes no lock, so it is safe
during a run."""

from __future__ import annotations

import argparse

import duckdb

from twin.cli.base import Command, UsageError, console, existing_run_dir, print_rows, whole_arg
from twin.engine.history import DIR, PERIODS, aggregate_ticks, has_history, query

# What --by shows of each period (twin.engine.history.TICK_KINDS says how each is aggregated).
BY_COLUMNS = ["messages", "alerts", "peak_alerts_per_s", "dark_hubs", "reachable_hubs", "hh_lost", "hh_at_risk"]
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
        parser.add_argument("--by", choices=PERIODS,
                            help="one row per day, week or month (UTC) instead of per tick: counts summed, dark hubs "
                                 "and alerts per second the period's highest half-hour, reachable hubs its lowest")
        parser.add_argument("--branch", help="with --by: the branch (default: the history's only one)")

    def run(self, args: argparse.Namespace) -> int:
        d = existing_run_dir(args.run_dir)
        if not has_history(d):
            raise UsageError(f"RUN_DIR: {d} has no tick history ({DIR}/; a run from before the history store?)")
        if args.limit < 1:
            raise UsageError(f"--limit: must be at least 1, got {args.limit}")
        if args.by:
            if args.sql:
                raise UsageError("--by: give --by or --sql, not both")
            try:
                cols, rows = aggregate_ticks(d, period=args.by, branch=args.branch, columns=BY_COLUMNS)
            except ValueError as e:
                raise UsageError(f"--branch: {e}") from None
            print_rows(cols, rows[-args.limit:], fmt=args.format, console=console,
                       title=f"{d}: the last {min(args.limit, len(rows))} of {len(rows)} {args.by}s")
            return 0
        sql = args.sql or DEFAULT_SQL.format(limit=int(args.limit))
        try:
            cols, rows = query(d, sql)
        except duckdb.Error as e:
            raise UsageError(f"--sql: {str(e).splitlines()[0]}") from None
        print_rows(cols, rows, fmt=args.format, console=console,
                   title="" if args.sql else f"{d}: the last {args.limit} ticks (tables: ticks, metrics)")
        return 0
