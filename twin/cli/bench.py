"""`twin bench`: the figures the project holds itself to (build, tick, memory; event costs; API
latency; dashboard updates; faults), written to a results file. Each suite's defaults are in one
table, SUITES; an option left out takes its suite's default, an option given is used as given, and
an option the suite does not use is refused (never silently ignored)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from twin.bench.api import run_api_bench
from twin.bench.dashboard import run_dashboard_bench
from twin.bench.engine import run_bench, run_capacity_bench, run_events_bench
from twin.bench.horizon import run_horizon_bench
from twin.bench.reliability import run_reliability_bench
from twin.cli.base import (
    Command,
    UsageError,
    check_memory,
    console,
    parse_count,
    parse_days,
    parse_hubs,
    parse_seed,
    parse_shards,
    whole_arg,
)
from twin.util.grammar import GrammarError, parse_number, shown

# suite -> {option dest: default}; only the options a suite uses appear under it.
SUITES: dict[str, dict[str, Any]] = {
    "engine": {"sizes": "1M,3M,10M,30M", "days": "1", "shards": None, "seed": "1", "out": "bench-results/engine.json"},
    "events": {"hubs": "30M", "scenario_hubs": "3M", "seed": "1", "out": "bench-results/events.json"},
    "api": {"hubs": "1M", "runs": 5, "out": "bench-results/api.json"},
    "duis": {"hubs": "1M", "runs": 3, "out": "bench-results/duis.json"},
    "dashboard": {"sizes": "1M,30M", "samples": 60, "out": "bench-results/dashboard.json"},
    "reliability": {"hubs": "30M", "chaos_hubs": "1M", "seed": "1", "out": "bench-results/reliability.json"},
    "capacity": {"sizes": "1M,30M", "days": "1", "seed": "1", "out": "bench-results/capacity.json"},
    "horizon": {"hubs": "30M", "days": "7", "storage_hubs": "1M", "storage_days": "365", "seed": "1",
                "out": "bench-results/horizon.json"},
    "growth": {"hubs": "100k", "years": "2", "seed": "1", "out": "bench-results/growth.json"},
    "nodes": {"sizes": "1M,10M", "days": "3", "seed": "1", "out": "bench-results/node-death.json"},
}
DEFAULT_SUITE = "engine"
# The reliability suite's chaos run: ticks simulated and seconds between shard kills.
RELIABILITY_TICKS = 480
RELIABILITY_KILL_EVERY_S = 3.0


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _defaults_help(dest: str) -> str:
    """'default: engine 1M,3M,10M,30M; dashboard 1M,30M' from SUITES, so no default is written twice."""
    return "default: " + "; ".join(f"{suite} {opts[dest]}" for suite, opts in SUITES.items()
                                   if dest in opts and opts[dest] is not None)


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """The suite's options: each one given on the command line as given, the others at the suite's
    default (SUITES). UsageError naming the option if one given is not used by the suite."""
    suite = args.suite
    used = SUITES[suite]
    for dest in sorted({d for opts in SUITES.values() for d in opts} - used.keys()):
        if getattr(args, dest) is not None:
            takes = ", ".join(_flag(d) for d in used)
            raise UsageError(f"{_flag(dest)}: the {suite} suite does not use it (it takes {takes})")
    return {dest: default if getattr(args, dest) is None else getattr(args, dest) for dest, default in used.items()}


def _years(text: str) -> float:
    """--years: simulated years, more than 0 and at most 100."""
    try:
        years = parse_number(text)
    except GrammarError:
        raise UsageError(f"--years: expected a number like 2 or 0.5, got {shown(text)}") from None
    if not 0 < years <= 100:
        raise UsageError(f"--years: must be more than 0 and at most 100, got {text}")
    return years


def _sizes(text: str) -> list[int]:
    return [parse_count(s, "sizes") for s in text.split(",")]


class BenchCommand(Command):
    name = "bench"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # Every default is None: the suite's own comes from SUITES in resolve_options.
        parser.add_argument("suite", nargs="?", choices=tuple(SUITES), default=DEFAULT_SUITE,
                            help="engine (default): sizes x build/day/memory; events: event costs and scenarios; "
                                 "api: gRPC latency and throughput; duis: signed DUIS reads per second, response "
                                 "times and the signatures' share of the cost; dashboard: tick-to-browser time and update "
                                 "sizes; reliability: kills, recovery, checkpoints, resume; capacity: the network "
                                 "capacity model's cost; horizon: a simulated year and decade, time and checkpoint "
                                 "storage; growth: memory, snapshot, checkpoint and request cost over simulated "
                                 "years, which must stay flat; nodes: a worker node killed mid-run on a cluster of "
                                 "three (needs root): recovery time and slowdown")
        parser.add_argument("--hubs", help="fleet size: events and api suites; reliability: the resume run's "
                                           f"({_defaults_help('hubs')})")
        parser.add_argument("--chaos-hubs", help=f"reliability suite: fleet size of the chaos run "
                                                 f"({_defaults_help('chaos_hubs')})")
        parser.add_argument("--scenario-hubs", help=f"events suite: fleet size for the scenarios "
                                                    f"({_defaults_help('scenario_hubs')})")
        parser.add_argument("--storage-hubs", help=f"horizon suite: fleet size of the year-long storage run "
                                                   f"({_defaults_help('storage_hubs')})")
        parser.add_argument("--storage-days", help=f"horizon suite: simulated days of the storage run "
                                                   f"({_defaults_help('storage_days')})")
        parser.add_argument("--sizes", help=f"fleet sizes ({_defaults_help('sizes')})")
        parser.add_argument("--samples", type=whole_arg,
                            help=f"dashboard suite: ticks timed per size ({_defaults_help('samples')})")
        parser.add_argument("--runs", type=whole_arg,
                            help="api suite: GetHub runs of 15 s at 1,000 requests/s; duis suite: runs of 10 s of "
                                 f"signed reads ({_defaults_help('runs')})")
        parser.add_argument("--days", help="engine and capacity suites: simulated days per size; horizon: days timed "
                                               f"({_defaults_help('days')})")
        parser.add_argument("--shards", help="engine suite: shard actors (default: one per CPU)")
        parser.add_argument("--years", help=f"growth suite: simulated years at full speed ({_defaults_help('years')})")
        parser.add_argument("--seed", help=f"fleet seed ({_defaults_help('seed')})")
        parser.add_argument("--out", help=f"results file, JSON ({_defaults_help('out')})")

    def run(self, args: argparse.Namespace) -> int:
        o = resolve_options(args)
        out = Path(o["out"])
        if args.suite == "api":
            if o["runs"] < 1:
                raise UsageError(f"--runs: at least 1, got {o['runs']}")
            res: Any = run_api_bench(hubs=parse_hubs(o["hubs"]), runs=o["runs"], out=out, console=console)
        elif args.suite == "duis":
            from twin.bench.duis import DUIS_SECONDS, DUIS_USERS, run_duis_bench

            if o["runs"] < 1:
                raise UsageError(f"--runs: at least 1, got {o['runs']}")
            res = run_duis_bench(hubs=parse_hubs(o["hubs"]), runs=o["runs"], users=DUIS_USERS, seconds=DUIS_SECONDS,
                                 out=out, console=console)
        elif args.suite == "dashboard":
            sizes = _sizes(o["sizes"])
            for s in sizes:
                check_memory(s, None)
            res = run_dashboard_bench(sizes, samples=o["samples"], out=out, console=console)
        elif args.suite == "reliability":
            seed = parse_seed(o["seed"])
            resume_hubs, chaos_hubs = parse_hubs(o["hubs"]), parse_hubs(o["chaos_hubs"], "chaos-hubs")
            check_memory(resume_hubs, None)
            res = run_reliability_bench(chaos_hubs=chaos_hubs, resume_hubs=resume_hubs, ticks=RELIABILITY_TICKS,
                                        kill_every_s=RELIABILITY_KILL_EVERY_S, seed=seed, out=out, console=console)
        elif args.suite == "growth":
            from twin.bench.growth import run_growth_bench

            hubs = parse_hubs(o["hubs"])
            years = _years(o["years"])
            check_memory(hubs, None)
            res = run_growth_bench(hubs=hubs, years=years, seed=parse_seed(o["seed"]), out=out, console=console)
        elif args.suite == "capacity":
            sizes = _sizes(o["sizes"])
            for s in sizes:
                check_memory(s, None)
            res = run_capacity_bench(sizes, days=parse_days(o["days"]), seed=parse_seed(o["seed"]), out=out,
                                     console=console)
        elif args.suite == "horizon":
            hubs, storage_hubs = parse_hubs(o["hubs"]), parse_hubs(o["storage_hubs"], "storage-hubs")
            check_memory(hubs, None)
            res = run_horizon_bench(hubs=hubs, days=parse_days(o["days"]), storage_hubs=storage_hubs,
                                    storage_days=parse_days(o["storage_days"]), seed=parse_seed(o["seed"]),
                                    out=out, console=console)
        elif args.suite == "nodes":
            from twin.bench.node_death import run_node_death_bench

            res = run_node_death_bench(_sizes(o["sizes"]), days=parse_days(o["days"]), seed=parse_seed(o["seed"]),
                                       out=out, console=console)
        elif args.suite == "events":
            seed = parse_seed(o["seed"])
            hubs = parse_hubs(o["hubs"])
            check_memory(hubs, None)
            res = run_events_bench(hubs=hubs, scenario_hubs=parse_hubs(o["scenario_hubs"], "scenario-hubs"), seed=seed,
                                   out=out, console=console)
        else:
            seed = parse_seed(o["seed"])
            sizes = _sizes(o["sizes"])
            days = parse_days(o["days"])
            for s in sizes:
                check_memory(s, None)
            res = run_bench(sizes, days=days, shards=parse_shards(argparse.Namespace(shards=o["shards"])), seed=seed,
                            out=out, console=console)
        return 0 if res else 1
