"""What every `twin` command shares, owned once: the consoles, the one usage error, the parsers of
numbers and fleet options (each message names its option), and the base class that turns a bad
command line into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import psutil
from rich.console import Console
from rich.table import Table

from twin.engine.address import RayAddressError
from twin.engine.needs import DEFAULT_CHECKPOINT_EVERY, RunNeeds, estimate_needs, free_disk_bytes
from twin.launcher.process import LaunchError
from twin.model.config import MAX_HUBS, FleetConfig, TwinInputError, parse_regions
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.timeutil import parse_instant
from twin.util.grammar import GrammarError, parse_decimal, parse_number, shown

# Wide enough for the tables when output goes to a file or a pipe.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and what it measured or ran did not succeed
EXIT_USAGE = 2  # a bad command line or input file: nothing started
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad command line: printed as one line naming the option, exit code 2."""


# Errors that are the user's to fix: one line, no traceback, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, LaunchError, TwinInputError, RayAddressError)


class Command:
    """One `twin` command (pip's command pattern): its options and what it does. `main` owns the
    exit codes: USER_ERRORS -> one line on stderr and 2, Ctrl-C -> 130."""

    name: ClassVar[str]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's options on its subparser (defaults are real defaults)."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def main(self, args: argparse.Namespace) -> int:
        try:
            return int(self.run(args) or EXIT_OK)
        except USER_ERRORS as e:
            err.print(f"twin {args.command}: error: {e}", highlight=False, markup=False)
            return EXIT_USAGE
        except KeyboardInterrupt:
            err.print("interrupted")
            return EXIT_INTERRUPTED


# --hubs and the like: ASCII digits, optional '_' or ',' between them, an optional fraction and an
# optional k/M/b multiplier ('1000000', '1_000_000', '1M', '250k', '1.5M').
_COUNT_RE = re.compile(r"([0-9]+(?:[_,][0-9]+)*(?:\.[0-9]+)?)([kKmMbB]?)", re.ASCII)


def parse_count(text: str, what: str = "hubs") -> int:
    """'1000000', '1_000_000', '1M', '250k', '1.5M' -> int; UsageError naming --`what` otherwise
    (non-ASCII digits, signs, inner blanks and fractions of one are refused)."""
    m = _COUNT_RE.fullmatch(text.strip(" \t"))
    if m is None:
        raise UsageError(f"--{what}: expected a whole number like 1000000 or 1M, got {shown(text)}")
    value = Fraction(m.group(1).replace("_", "").replace(",", "")) * {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}[
        m.group(2).lower()]
    if value.denominator != 1:
        raise UsageError(f"--{what}: expected a whole number, got {shown(text)}")
    return int(value)


def real_arg(text: str) -> float:
    """argparse type: a finite decimal number in ASCII (argparse names the option)."""
    try:
        return parse_number(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"expected a number like 2.5, got {shown(text)}") from None


def whole_arg(text: str) -> int:
    """argparse type: a non-negative whole number in ASCII digits (argparse names the option)."""
    try:
        return parse_decimal(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"expected a whole number in ASCII digits, got {shown(text)}") from None


def parse_positive(text: str, what: str) -> int:
    """A whole number >= 1 for --`what`; UsageError naming it otherwise."""
    try:
        v = parse_decimal(text, signed=True)
    except GrammarError:
        raise UsageError(f"--{what}: expected a whole number, got {shown(text)} (ASCII digits 0-9)") from None
    if v < 1:
        raise UsageError(f"--{what}: must be at least 1, got {v}")
    return v


def parse_seed(text: str) -> int:
    """--seed: what FleetConfig takes, checked here so the message names the option."""
    try:
        v = parse_decimal(text, signed=True)
    except GrammarError:
        raise UsageError(f"--seed: expected a whole number, got {shown(text)} (ASCII digits 0-9)") from None
    if not 0 <= v < 2**63:
        raise UsageError(f"--seed: must be a whole number in [0, 2^63), got {v}")
    return v


def parse_days(text: str) -> float:
    """--days: a positive number of simulated days, at least one half-hour tick."""
    try:
        days = parse_number(text, finite=False)
    except GrammarError:
        raise UsageError(f"--days: expected a number like 1.5, got {shown(text)}") from None
    if not days > 0:  # also rejects nan
        raise UsageError(f"--days: must be more than zero, got {text}")
    if days == float("inf"):
        raise UsageError(f"--days: must be finite, got {text}")
    if round(days * HALF_HOURS_PER_DAY) < 1:
        raise UsageError(f"--days: {text} is less than one half-hour tick")
    return days


def parse_hubs(text: str, what: str = "hubs") -> int:
    """A fleet size for --`what`: 1 to MAX_HUBS hubs, written as parse_count reads it."""
    hubs = parse_count(text, what)
    if hubs < 1:
        raise UsageError(f"--{what}: must be at least 1, got {hubs:,}")
    if hubs > MAX_HUBS:
        raise UsageError(f"--{what}: must be at most {MAX_HUBS:,}, got {hubs:,}")
    return hubs


def parse_shards(args: argparse.Namespace) -> int | None:
    """--shards, or None (one per CPU Ray has)."""
    return parse_positive(args.shards, "shards") if args.shards is not None else None


def optional(parse: Any, text: str | None) -> Any:
    """`parse(text)`, or None when the option was not given (the scenario's value then holds)."""
    return None if text is None else parse(text)


def fleet_args(sp: argparse.ArgumentParser, hubs: str | None) -> None:
    """--hubs, --seed, --regions, --start (and the hidden --block-size) of a command that builds a
    fleet; `hubs` None: the fleet values come from a scenario unless given."""
    sp.add_argument("--hubs", default=hubs, help=f"number of hubs, e.g. 1000000 or 1M (default {hubs or '1M'})")
    sp.add_argument("--seed", default=None if hubs is None else "1", help="fleet seed (default 1)")
    sp.add_argument("--regions", help="only these CSP regions, e.g. North,Central (default all)")
    sp.add_argument("--start", help="simulated start: an instant, ISO 8601 with a zone (Z or an offset), "
                    "kept and shown in UTC (default 2026-11-01T00:00Z)")
    sp.add_argument("--block-size", help=argparse.SUPPRESS)


def fleet_config(args: argparse.Namespace) -> FleetConfig:
    """The FleetConfig of fleet_args' options (--hubs and --seed given or defaulted)."""
    hubs = parse_hubs(args.hubs)
    seed = parse_seed(args.seed)
    start = {}
    if getattr(args, "start", None):
        try:
            start["start"] = parse_instant(args.start, "--start")
        except TwinInputError as e:
            raise UsageError(str(e)) from None
    regions = parse_regions(args.regions) if getattr(args, "regions", None) else None
    kw: dict[str, Any] = {"hubs": hubs, "seed": seed, **start}
    if regions:
        kw["regions"] = regions
    if getattr(args, "block_size", None):
        kw["block_size"] = parse_positive(args.block_size, "block-size")
    return FleetConfig(**kw)


def check_memory(hubs: int, address: str | None, *, needs: RunNeeds | None = None) -> None:
    """UsageError naming memory if the run will not fit in this machine's available memory
    (`needs`, or a plain run of `hubs` on one shard per CPU); a cluster's memory is the cluster's
    business: no check with an `address`."""
    if address:
        return
    if needs is None:
        needs = estimate_needs(hubs, shards=os.cpu_count() or 1, checkpoint_every=None, days=None)
    have = psutil.virtual_memory().available
    if needs.memory_bytes > have:
        raise UsageError(f"--hubs: {hubs:,} hubs need {needs.memory_text()} and this machine has "
                         f"{have / 2**30:.1f} GiB available; use fewer hubs or a cluster (--address)")


def check_needs(config: FleetConfig, *, address: str | None, run_dir: Path, shards: int | None,
                days: float | None, serving: bool = False,
                checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY, report: bool = False) -> RunNeeds:
    """Before anything is built: say what the run will need (on stderr) and refuse with a
    UsageError (exit 2) naming memory or disk, with what it needs and what is free, if either does
    not fit. Memory is this machine's unless `address` names a cluster; the disk is always the run
    directory's filesystem."""
    needs = estimate_needs(config.hubs, shards=shards or os.cpu_count() or 1, checkpoint_every=checkpoint_every,
                           days=days, serving=serving, report=report)
    err.print(f"this run needs {needs.memory_text()}; {needs.disk_text()}", highlight=False, markup=False)
    check_memory(config.hubs, address, needs=needs)
    free = free_disk_bytes(run_dir)
    if needs.disk_bytes > free:
        raise UsageError(f"--run-dir: {config.hubs:,} hubs need {needs.disk_text()} and the filesystem of "
                         f"{run_dir} has {free / 2**30:.2f} GiB free; use fewer hubs or days, or another --run-dir")
    return needs


def run_dir(args: argparse.Namespace, name: str) -> Path:
    """--run-dir, or runs/NAME-TIME (UTC, to the second)."""
    if getattr(args, "run_dir", None):
        return Path(args.run_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{name}-{stamp}"


def existing_run_dir(text: str, what: str = "RUN_DIR") -> Path:
    """A run directory given on the command line (it has a manifest.json); UsageError naming `what`."""
    d = Path(text)
    if not (d / "manifest.json").exists():
        raise UsageError(f"{what}: {d} is not a run directory (no manifest.json)")
    return d


def _cell(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    return str(v)


def print_rows(cols: list[str], rows: list[tuple[Any, ...]], *, fmt: str, console: Console, title: str = "") -> None:
    """Rows as a table (thousands separated), CSV or JSON on stdout."""
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
