"""`twin sweep`: one scenario at several values of one parameter, the points run in parallel on Ray,
with a baseline run and, per CSP, the breaking point (twin.studies.sweep). The sweep is a sweep
file (sweeps/*.yaml), or a scenario with --param and --values; options given override the file's."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from twin.cli.base import Command, UsageError, console, optional, parse_hubs, parse_seed, parse_shards, run_dir
from twin.engine import runtime
from twin.studies.sweep import is_sweep_file, load_sweep, run_sweep


class SweepCommand(Command):
    name = "sweep"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="a sweep file (sweeps/*.yaml) or a scenario with --param and --values")
        parser.add_argument("--param",
                            help="incidents.outage_alert_backoff_s (a model parameter) or events[1].installs_per_day")
        parser.add_argument("--values", help="comma-separated values")
        parser.add_argument("--hubs")
        parser.add_argument("--seed")
        parser.add_argument("--shards", help="shards per point")
        parser.add_argument("--address", help="a Ray cluster (default: local Ray)")
        parser.add_argument("--run-dir")

    def run(self, args: argparse.Namespace) -> int:
        # Checked before Ray starts, so a typo costs nothing.
        path = Path(args.scenario)
        if not path.is_file():
            raise UsageError(f"scenario: no such file: {path}")
        spec = load_sweep(path) if is_sweep_file(path) else None
        param = args.param or (spec.param if spec else None)
        if not param:
            raise UsageError("--param: name the parameter to sweep (or give a sweep file)")
        if args.values is not None:
            values = [yaml.safe_load(v) for v in args.values.split(",") if v.strip()]
        else:
            values = spec.values if spec else []
        if len(values) < 2:
            raise UsageError("--values: give at least two comma-separated values")
        hubs = optional(parse_hubs, args.hubs)
        seed = optional(parse_seed, args.seed)
        shards = parse_shards(args)
        if spec:
            hubs = spec.hubs if hubs is None else hubs
            seed = spec.seed if seed is None else seed
            shards = spec.shards if shards is None else shards
        out = run_dir(args, f"sweep-{path.stem}")
        runtime.start_ray(address=args.address)
        if spec:
            res = run_sweep(spec.scenario, param=param, values=values, out=out, hubs=hubs, seed=seed, shards=shards,
                            klass=spec.klass, quantile=spec.quantile, over=spec.over, name=spec.name,
                            description=spec.description)
        else:
            res = run_sweep(path, param=param, values=values, out=out, hubs=hubs, seed=seed, shards=shards)
        for p in res["points"]:
            console.print(f"{param}={p['value']}: peak msgs/s {p['peak_messages_per_s']}, peak alerts/s "
                          f"{p['peak_alerts_per_s']}, max dark {p['max_dark_hubs']:,}, HH lost {p['hh_periods_lost']:,}",
                          highlight=False)
        bp = res.get("breaking_point")
        if bp:
            window = "in the worst half-hour" if bp["over"] == "half-hour" else "over the run"
            console.print(f"breaking point (p{bp['quantile'] * 100:g} {bp['class']} latency {window} passes "
                          f"{bp['target_s']:g} s), and headroom at the baseline:", highlight=False)
            for csp, e in bp["per_csp"].items():
                h = res["headroom"][csp]
                if e["status"] == "crossed":
                    at = f"{param}={e['value']:g} (between {e['bracket'][0]:g} and {e['bracket'][1]:g})"
                elif e["status"] == "within":
                    at = "not reached in the range swept"
                else:
                    at = f"at or below {param}={e['value']:g}"
                console.print(f"  {csp}: {at}; baseline within target {h['within_target']:.2%}, worst p99 "
                              f"{h['worst_tick_p99_s']} s, busiest link {h['busiest_link']} with "
                              f"{h['link_headroom']} of its capacity left", highlight=False)
        console.print(f"sweep report: {out / 'sweep.html'} and {out / 'sweep.json'}", highlight=False)
        return 0
