"""The `twin` commands that revisit runs: `history` (SQL over a run's tick summaries), `fork` (a
what-if branch from a past tick) and `compare` (two branches side by side)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DEFAULT_SQL = ("SELECT tick, time_utc, messages, reachable_hubs, dark_hubs, alerts, peak_alerts_per_s, hh_lost, "
               "hh_at_risk FROM ticks ORDER BY tick DESC LIMIT {limit}")


class TimelineUsageError(Exception):
    """A bad command line (printed as one line, exit code 2)."""


def _run_dir(text: str, what: str = "RUN_DIR") -> Path:
    d = Path(text)
    if not (d / "manifest.json").exists():
        raise TimelineUsageError(f"{what}: {d} is not a run directory (no manifest.json)")
    return d


def _cell(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    return str(v)


def print_rows(cols: list[str], rows: list[tuple[Any, ...]], *, fmt: str, console: Console, title: str = "") -> None:
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    elif fmt == "json":
        print(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str, indent=1))
    else:
        t = Table(title=title or None, title_justify="left")
        for c in cols:
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(*(_cell(v) for v in r))
        console.print(t)


def cmd_history(args: argparse.Namespace, console: Console) -> int:
    import duckdb

    from twin.engine.history import FILE, query

    d = _run_dir(args.run_dir)
    if not (d / FILE).exists():
        raise TimelineUsageError(f"RUN_DIR: {d} has no {FILE} (a run from before the history store?)")
    if args.limit < 1:
        raise TimelineUsageError(f"--limit: must be at least 1, got {args.limit}")
    sql = args.sql or DEFAULT_SQL.format(limit=int(args.limit))
    try:
        cols, rows = query(d / FILE, sql)
    except duckdb.Error as e:
        raise TimelineUsageError(f"--sql: {str(e).splitlines()[0]}") from None
    print_rows(cols, rows, fmt=args.format, console=console,
               title="" if args.sql else f"{d}: the last {args.limit} ticks (tables: ticks, metrics)")
    return 0


def add_commands(sub: Any, console: Console) -> None:
    """Register the commands on the `twin` parser's subparsers."""
    h = sub.add_parser("history", help="query a run's tick-summary history (DuckDB SQL)")
    h.add_argument("run_dir", metavar="RUN_DIR")
    h.add_argument("--sql", help="a SQL query over the tables `ticks` (one row per tick per branch) and `metrics` "
                                 "(branch, tick, metric, key, value); default: the last ticks")
    h.add_argument("--limit", type=int, default=20, help="ticks shown without --sql (default 20)")
    h.add_argument("--format", choices=("table", "csv", "json"), default="table")
    h.set_defaults(fn=lambda a: cmd_history(a, console))
