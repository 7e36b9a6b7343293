"""`twin sweep`: one scenario at several values of one parameter, the points run in parallel on Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from twin.cli.base import Command, UsageError, console, optional, parse_hubs, parse_seed, parse_shards, run_dir
from twin.engine import runtime
from twin.studies.sweep import run_sweep


class SweepCommand(Command):
    name = "sweep"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario")
        parser.add_argument("--param", required=True,
                            help="incidents.outage_alert_backoff_s (a model parameter) or events[1].installs_per_day")
        parser.add_argument("--values", required=True, help="comma-separated values")
        parser.add_argument("--hubs")
        parser.add_argument("--seed")
        parser.add_argument("--shards", help="shards per point")
        parser.add_argument("--address", help="a Ray cluster (default: local Ray)")
        parser.add_argument("--run-dir")

    def run(self, args: argparse.Namespace) -> int:
        values = [yaml.safe_load(v) for v in args.values.split(",") if v.strip()]
        if len(values) < 2:
            raise UsageError("--values: give at least two comma-separated values")
        # Checked before Ray starts, so a typo costs nothing.
        hubs = optional(parse_hubs, args.hubs)
        seed = optional(parse_seed, args.seed)
        shards = parse_shards(args)
        out = run_dir(args, f"sweep-{Path(args.scenario).stem}")
        runtime.start_ray(address=args.address)
        res = run_sweep(Path(args.scenario), param=args.param, values=values, out=out, hubs=hubs, seed=seed,
                        shards=shards)
        for p in res["points"]:
            console.print(f"{args.param}={p['value']}: peak msgs/s {p['peak_messages_per_s']}, peak alerts/s "
                          f"{p['peak_alerts_per_s']}, max dark {p['max_dark_hubs']:,}, HH lost {p['hh_periods_lost']:,}",
                          highlight=False)
        console.print(f"sweep report: {out / 'sweep.html'} and {out / 'sweep.json'}", highlight=False)
        return 0
