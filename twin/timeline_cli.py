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

from twin.model.timeutil import format_instant
from twin.util.grammar import GrammarError, parse_decimal, shown

DEFAULT_SQL = ("SELECT tick, time_utc, messages, reachable_hubs, dark_hubs, alerts, peak_alerts_per_s, hh_lost, "
               "hh_at_risk FROM ticks ORDER BY tick DESC LIMIT {limit}")


class TimelineUsageError(Exception):
    """A bad command line (printed as one line, exit code 2)."""


def whole_arg(text: str) -> int:
    """argparse type: a non-negative whole number in ASCII digits (argparse names the option)."""
    try:
        return parse_decimal(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"expected a whole number in ASCII digits, got {shown(text)}") from None


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

    from twin.engine.history import DIR, has_history, query

    d = _run_dir(args.run_dir)
    if not has_history(d):
        raise TimelineUsageError(f"RUN_DIR: {d} has no tick history ({DIR}/; a run from before the history store?)")
    if args.limit < 1:
        raise TimelineUsageError(f"--limit: must be at least 1, got {args.limit}")
    sql = args.sql or DEFAULT_SQL.format(limit=int(args.limit))
    try:
        cols, rows = query(d, sql)
    except duckdb.Error as e:
        raise TimelineUsageError(f"--sql: {str(e).splitlines()[0]}") from None
    print_rows(cols, rows, fmt=args.format, console=console,
               title="" if args.sql else f"{d}: the last {args.limit} ticks (tables: ticks, metrics)")
    return 0


def _tick(text: str, what: str, config: Any, *, relative_to: int = 0) -> int:
    """A tick number, an ISO time with zone, or an offset like '1d' (from `relative_to`)."""
    from twin.model.config import TwinInputError
    from twin.model.ops.commands import resolve_time

    try:  # a tick number in ASCII digits; anything else is a time or an offset (or refused there)
        value: Any = parse_decimal(text)
    except GrammarError:
        value = text
    try:
        return resolve_time(value, config, now_tick=0, relative_to=relative_to, name=what)
    except TwinInputError as e:
        raise TimelineUsageError(f"{what}: {e.reason}") from None


def cmd_fork(args: argparse.Namespace, console: Console, err: Console) -> int:
    from twin.engine.branches import fork, load_what_if
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import read_manifest
    from twin.model.config import FleetConfig

    parent = _run_dir(args.run_dir)
    config = FleetConfig.from_dict(read_manifest(parent)["config"])
    at = _tick(args.at, "--at", config)
    until = _tick(args.until, "--until", config, relative_to=at)
    if until < at:
        raise TimelineUsageError(f"--until: tick {until} is before the fork tick {at}")
    events: list[dict[str, Any]] = []
    drop = list(args.drop or [])
    if args.scenario:
        ev, dr, _ = load_what_if(Path(args.scenario))
        events += ev
        drop += dr
    for text in args.event or []:
        try:
            ev = json.loads(text)
        except ValueError as e:
            raise TimelineUsageError(f"--event: not JSON ({e}): {text!r}") from None
        events.append(ev)
    start_ray(address=getattr(args, "address", None))
    err.print(f"forking {parent} at tick {at} ({format_instant(config.time_of(at))}) with {len(events)} event(s) "
              f"added and {len(drop)} left out, running to tick {until}…", highlight=False)
    out = fork(parent, at=at, until=until, events=events, drop=drop, name=args.name,
               branch_dir=Path(args.out) if args.out else None)
    console.print(f"branch {out['name']} at tick {out['tick']} (from checkpoint {out['base_checkpoint']}); "
                  f"state hash {out['state_hash']}", highlight=False)
    console.print(f"run directory {out['run_dir']}; compare with: twin compare {parent} {out['run_dir']}", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from twin.reporting.compare import compare_runs, write_comparison

    a, b = _run_dir(args.run_a, "RUN_A"), _run_dir(args.run_b, "RUN_B")
    try:
        cmp = compare_runs(a, b)
    except (FileNotFoundError, ValueError) as e:
        raise TimelineUsageError(str(e)) from None
    div = cmp["divergence_tick"]
    console.print(f"{cmp['a']['name']} vs {cmp['b']['name']}: common ticks {cmp['common_ticks'][0]}-"
                  f"{cmp['common_ticks'][1]}; " + ("identical" if div is None else
                                                    f"first difference at tick {div} ({cmp['divergence_time']} UTC) in "
                                                    f"{', '.join(cmp['changed_at_divergence']) or 'breakdowns'}"),
                  highlight=False)
    rows = [(r["figure"], r["a"], r["b"], r["difference"]) for r in cmp["aggregates"]]
    print_rows(["figure", cmp["a"]["name"], cmp["b"]["name"], "B - A"], rows, fmt="table", console=console)
    if cmp["operations"]:
        print_rows(["operation", "counter", "A", "B"],
                   [(o["operation"], o["counter"], o["a"], o["b"]) for o in cmp["operations"]], fmt="table",
                   console=console)
    out = Path(args.out) if args.out else b / f"compare-{a.name}"
    j, h = write_comparison(cmp, out)
    console.print(f"comparison: {h} and {j}", highlight=False)
    return 0


def add_commands(sub: Any, console: Console, err: Console | None = None) -> None:
    """Register the commands on the `twin` parser's subparsers."""
    h = sub.add_parser("history", help="query a run's tick-summary history (DuckDB SQL; takes no lock, so it is safe "
                                       "during a run)")
    h.add_argument("run_dir", metavar="RUN_DIR")
    h.add_argument("--sql", help="a SQL query over the tables `ticks` (one row per tick per branch) and `metrics` "
                                 "(branch, tick, metric, key, value); default: the last ticks")
    h.add_argument("--limit", type=whole_arg, default=20, help="ticks shown without --sql (default 20)")
    h.add_argument("--format", choices=("table", "csv", "json"), default="table")
    h.set_defaults(fn=lambda a: cmd_history(a, console))

    f = sub.add_parser("fork", help="fork a what-if branch of a run from a past tick, and run it")
    f.add_argument("run_dir", metavar="RUN_DIR")
    f.add_argument("--at", required=True, help="the fork tick (a tick number or an ISO time)")
    f.add_argument("--until", required=True, help="run the branch to this tick (a number, or an offset like 2d from --at)")
    f.add_argument("--scenario", help="a what-if YAML: events (offsets from the fork tick) and drop (parent operations)")
    f.add_argument("--event", action="append", help="an event as JSON, e.g. '{\"type\": \"power_outage\", ...}' (repeatable)")
    f.add_argument("--drop", action="append", help="leave out a parent operation (operations/NAME or NAME) or journal seq")
    f.add_argument("--name", help="branch id (default fork-TICK-TIME); lower-case letters, digits and '-'")
    f.add_argument("--out", help="branch directory (default RUN_DIR/branches/NAME)")
    f.add_argument("--address", help="join an existing Ray cluster instead of starting one")
    f.set_defaults(fn=lambda a: cmd_fork(a, console, err or console))

    c = sub.add_parser("compare", help="compare two runs (a run and its branch) side by side; writes a report")
    c.add_argument("run_a", metavar="RUN_A")
    c.add_argument("run_b", metavar="RUN_B")
    c.add_argument("--out", help="where comparison.html/json go (default RUN_B/compare-NAME_OF_A)")
    c.set_defaults(fn=lambda a: cmd_compare(a, console))
