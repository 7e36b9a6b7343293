"""`twin fork`: a what-if branch of a run from a past tick (events added, operations left out),
run on Ray to a later tick."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from twin.cli.base import Command, UsageError, console, err, existing_run_dir
from twin.engine import branches, runtime
from twin.engine.supervisor import read_manifest
from twin.model.config import FleetConfig, TwinInputError
from twin.model.ops.commands import resolve_time
from twin.model.timeutil import format_instant
from twin.util.grammar import GrammarError, parse_decimal


def _tick(text: str, what: str, config: FleetConfig, *, relative_to: int = 0) -> int:
    """A tick number, an ISO time with zone, or an offset like '1d' (from `relative_to`)."""
    try:  # a tick number in ASCII digits; anything else is a time or an offset (or refused there)
        value: Any = parse_decimal(text)
    except GrammarError:
        value = text
    try:
        return resolve_time(value, config, now_tick=0, relative_to=relative_to, name=what)
    except TwinInputError as e:
        raise UsageError(f"{what}: {e.reason}") from None


class ForkCommand(Command):
    name = "fork"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_dir", metavar="RUN_DIR")
        parser.add_argument("--at", required=True, help="the fork tick (a tick number or an ISO time)")
        parser.add_argument("--until", required=True,
                            help="run the branch to this tick (a number, or an offset like 2d from --at)")
        parser.add_argument("--scenario",
                            help="a what-if YAML: events (offsets from the fork tick) and drop (parent operations)")
        parser.add_argument("--event", action="append",
                            help="an event as JSON, e.g. '{\"type\": \"power_outage\", ...}' (repeatable)")
        parser.add_argument("--drop", action="append",
                            help="leave out a parent operation (operations/NAME or NAME) or journal seq")
        parser.add_argument("--name", help="branch id (default fork-TICK-TIME); lower-case letters, digits and '-'")
        parser.add_argument("--out", help="branch directory (default RUN_DIR/branches/NAME)")
        parser.add_argument("--address", help="join an existing Ray cluster instead of starting one")

    def run(self, args: argparse.Namespace) -> int:
        parent = existing_run_dir(args.run_dir)
        config = FleetConfig.from_dict(read_manifest(parent)["config"])
        at = _tick(args.at, "--at", config)
        until = _tick(args.until, "--until", config, relative_to=at)
        if until < at:
            raise UsageError(f"--until: tick {until} is before the fork tick {at}")
        events: list[dict[str, Any]] = []
        drop = list(args.drop or [])
        if args.scenario:
            ev, dr, _ = branches.load_what_if(Path(args.scenario))
            events += ev
            drop += dr
        for text in args.event or []:
            try:
                events.append(json.loads(text))
            except ValueError as e:
                raise UsageError(f"--event: not JSON ({e}): {text!r}") from None
        runtime.start_ray(address=args.address)
        if args.address:
            runtime.check_run_dir_shared(Path(args.out) if args.out else parent)
        err.print(f"forking {parent} at tick {at} ({format_instant(config.time_of(at))}) with {len(events)} event(s) "
                  f"added and {len(drop)} left out, running to tick {until}…", highlight=False)
        out = branches.fork(parent, at=at, until=until, events=events, drop=drop, name=args.name,
                            branch_dir=Path(args.out) if args.out else None)
        console.print(f"branch {out['name']} at tick {out['tick']} (from checkpoint {out['base_checkpoint']}); "
                      f"state hash {out['state_hash']}", highlight=False)
        console.print(f"run directory {out['run_dir']}; compare with: twin compare {parent} {out['run_dir']}",
                      highlight=False)
        return 0
