"""`twin sweep`: one scenario at several values of one parameter, the points run in parallel on Ray,
with a baseline run and, per CSP, the breaking point (twin.studies.sweep). The sweep is a sweep
file (sweeps/*.yaml), or a scenario with --param and --values; options given override the file's.

With --seeds (or `seeds:` in the sweep file) and no parameter, it is an ensemble: the scenario once
per seed, and per figure the mean, spread and 95% interval (twin.studies.ensemble); with a
parameter as well, every point runs once per seed and the breaking point is found on the means."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from twin.cli.base import Command, UsageError, console, optional, parse_hubs, parse_seed, parse_shards, run_dir
from twin.engine import runtime
from twin.model.config import TwinInputError
from twin.reporting.ensemble import print_ensemble, print_sweep_spread
from twin.studies.ensemble import parse_seeds
from twin.studies.sweep import is_sweep_file, load_sweep, run_ensemble, run_sweep


class SweepCommand(Command):
    name = "sweep"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="a sweep file (sweeps/*.yaml) or a scenario with --param and --values")
        parser.add_argument("--param",
                            help="incidents.outage_alert_backoff_s (a model parameter) or events[1].installs_per_day")
        parser.add_argument("--values", help="comma-separated values")
        parser.add_argument("--hubs")
        parser.add_argument("--seed")
        parser.add_argument("--seeds", help="run each point once per seed: a count (8: seeds 1-8), a range (1-8) or "
                                            "a list (1,5,9); with no --param, an ensemble of the scenario")
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
        seeds = None
        if args.seeds is not None:
            try:
                seeds = parse_seeds(args.seeds, "--seeds")
            except TwinInputError as e:
                raise UsageError(f"--seeds: {e.reason}") from None
        elif spec and spec.seeds:
            seeds = spec.seeds
        if seeds and args.seed is not None:
            raise UsageError("--seed: give --seed or --seeds, not both")
        if not param:
            if seeds:
                return self._ensemble(args, spec.scenario if spec else path, seeds, spec)
            raise UsageError("--param: name the parameter to sweep, or --seeds for an ensemble (or give a sweep file)")
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
                            description=spec.description, seeds=seeds)
        else:
            res = run_sweep(path, param=param, values=values, out=out, hubs=hubs, seed=seed, shards=shards,
                            seeds=seeds)
        of = f" (mean of {len(seeds)} seeds)" if seeds else ""
        for p in res["points"]:
            console.print(f"{param}={p['value']}{of}: peak msgs/s {p['peak_messages_per_s']}, peak alerts/s "
                          f"{p['peak_alerts_per_s']:,}, max dark {p['max_dark_hubs']:,}, HH lost {p['hh_periods_lost']:,}",
                          highlight=False)
        if seeds:
            print_sweep_spread(res, console)
        bp = res.get("breaking_point")
        if bp:
            window = "in the worst half-hour" if bp["over"] == "half-hour" else "over the run"
            console.print(f"breaking point (p{bp['quantile'] * 100:g} {bp['class']} latency {window} passes "
                          f"{bp['target_s']:g} s), and headroom at the baseline:", highlight=False)
            for csp, edge in bp["per_csp"].items():
                h = res["headroom"][csp]
                if edge["status"] == "crossed":
                    at = f"{param}={edge['value']:g} (between {edge['bracket'][0]:g} and {edge['bracket'][1]:g})"
                elif edge["status"] == "within":
                    at = "not reached in the range swept"
                else:
                    at = f"at or below {param}={edge['value']:g}"
                console.print(f"  {csp}: {at}; baseline within target {h['within_target']:.2%}, worst p99 "
                              f"{h['worst_tick_p99_s']} s, busiest link {h['busiest_link']} with "
                              f"{h['link_headroom']} of its capacity left", highlight=False)
        tp = res["throughput"]
        console.print(f"{tp['runs']} runs, {tp['hub_days']:,.0f} hub-days in {tp['wall_s']:.1f} s: "
                      f"{tp['hub_days_per_s']:,.0f} hub-days per second", highlight=False)
        console.print(f"sweep report: {out / 'sweep.html'} and {out / 'sweep.json'}", highlight=False)
        return 0

    def _ensemble(self, args: argparse.Namespace, scenario: Path, seeds: list[int], spec) -> int:
        hubs = optional(parse_hubs, args.hubs)
        shards = parse_shards(args)
        if spec:
            hubs = spec.hubs if hubs is None else hubs
            shards = spec.shards if shards is None else shards
        out = run_dir(args, f"ensemble-{scenario.stem}")
        runtime.start_ray(address=args.address)
        kw = {"klass": spec.klass, "quantile": spec.quantile, "name": spec.name,
              "description": spec.description} if spec else {}
        res = run_ensemble(scenario, seeds=seeds, out=out, hubs=hubs, shards=shards, **kw)
        print_ensemble(res, console)
        console.print(f"ensemble report: {out / 'ensemble.html'} and {out / 'ensemble.json'}", highlight=False)
        return 0
