"""`twin run`: a scenario (or the plain fleet) headless on Ray, with progress, and its report."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from twin.cli.base import (
    Command,
    check_needs,
    console,
    err,
    fleet_args,
    fleet_config,
    optional,
    parse_days,
    parse_hubs,
    parse_seed,
    parse_shards,
    run_dir,
)
from twin.engine import runtime
from twin.model.summary import TickSummary
from twin.model.timeutil import format_instant
from twin.reporting.summary import print_summary
from twin.studies.scenario import Scenario, load_scenario, run_scenario

# The plain fleet's values when no scenario file is given.
BASELINE_HUBS = "1M"
BASELINE_SEED = "1"
BASELINE_DAYS = 1.0


def scenario_of(args: argparse.Namespace) -> Scenario:
    """The scenario file's (its fleet values overridden by the options given), or the baseline."""
    hubs = optional(parse_hubs, args.hubs)
    seed = optional(parse_seed, args.seed)
    days = optional(parse_days, args.days)
    if args.scenario:
        return load_scenario(Path(args.scenario), hubs=hubs, seed=seed, days=days)
    config = fleet_config(argparse.Namespace(**{
        **vars(args), "hubs": BASELINE_HUBS if args.hubs is None else args.hubs,
        "seed": BASELINE_SEED if args.seed is None else args.seed}))
    return Scenario(name="baseline", description="The fleet with no operator events.", config=config,
                    days=days if days is not None else BASELINE_DAYS, events=[])


def operation_line(op: dict[str, Any]) -> str:
    """One operation of a run report at the end of the run, in words: "operations/power-outage-1
    power_outage: DONE, 100% done (reason)"; one still pending did not start within the run."""
    md = op["metadata"]
    state = str(md["state"])
    how = ("did not start within the run" if state == "PENDING"
           else f"{state}, {float(md.get('percent_done') or 0):.0f}% done")
    reason = f" ({md['reason']})" if md.get("reason") else ""
    return f"{op['name']} {op.get('kind', '')}: {how}{reason}"


class RunCommand(Command):
    name = "run"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", nargs="?", help="scenario file (YAML); its fleet values unless overridden")
        fleet_args(parser, None)
        parser.add_argument("--days", default=None, help="simulated days (default: the scenario's, or 1)")
        parser.add_argument("--run-dir", help="where the journal and report go (default runs/NAME-TIME)")
        parser.add_argument("--shards", help="shard actors (default: one per CPU Ray has)")
        parser.add_argument("--json", help="also write the summary as JSON to this path")
        parser.add_argument("--address", help="join an existing Ray cluster instead of starting one")

    def run(self, args: argparse.Namespace) -> int:
        sc = scenario_of(args)
        config = sc.config
        shards = parse_shards(args)
        out_dir = run_dir(args, sc.name)
        check_needs(config, address=args.address, run_dir=out_dir, shards=shards, days=sc.days)
        runtime.start_ray(address=args.address, num_cpus=None)
        if args.address:
            runtime.check_run_dir_shared(out_dir)
        ticks = sc.ticks
        err.print(f"scenario {sc.name}: {config.hubs:,} hubs from {format_instant(config.start)}, {sc.days:g} days, "
                  f"{len(sc.commands)} event(s); "
                  f"run directory {out_dir}", highlight=False)
        done = 0
        t = time.perf_counter()
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err,
                      transient=False) as progress:
            task = progress.add_task("building", total=ticks, rate="")

            def on_tick(s: TickSummary) -> None:
                nonlocal done
                done += 1
                elapsed = time.perf_counter() - t
                progress.update(task, advance=1, description=f"{config.time_of(s.tick + 1):%Y-%m-%d %H:%M}",
                                rate=f"{config.hubs * done / max(elapsed, 1e-9) / 1e6:,.1f}M hub-ticks/s")

            report = run_scenario(sc, run_dir=out_dir, shards=shards, progress=on_tick)
        print_summary(report["summary"], console)
        for op in report["operations"]:
            console.print(operation_line(op), highlight=False)
        if args.json:
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report["summary"], indent=2) + "\n")
            err.print(f"summary written to {path}")
        console.print(f"report: {out_dir / 'report.html'} and {out_dir / 'report.json'}", highlight=False)
        return 0
