"""`twin run`: a scenario (or the plain fleet) headless on Ray, with progress, and its report."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from twin.cli.base import (
    Command,
    UsageError,
    check_memory,
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
from twin.engine.needs import DEFAULT_CHECKPOINT_EVERY, estimate_needs
from twin.engine.rundir import read_manifest
from twin.launcher.story import placement_line, recovery_line
from twin.model.summary import TickSummary
from twin.model.timeutil import format_instant
from twin.reporting.summary import print_summary
from twin.studies.scenario import Scenario, ScenarioRun, load_resumable, load_scenario
from twin.util.grammar import GrammarError, parse_decimal, shown

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


# The options that say what to run: a resumed run keeps its own (manifest.json, scenario.json).
RUN_OPTIONS = ("hubs", "seed", "regions", "start", "block_size", "days", "run_dir", "shards", "checkpoint_every")


def checkpoint_every_arg(text: str) -> int:
    """argparse type for --checkpoint-every: ticks between checkpoints, 0 for none."""
    try:
        return parse_decimal(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"a whole number of ticks (0: none), got {shown(text)}") from None


class RunCommand(Command):
    name = "run"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", nargs="?", help="scenario file (YAML); its fleet values unless overridden")
        fleet_args(parser, None)
        parser.add_argument("--days", default=None, help="simulated days (default: the scenario's, or 1)")
        parser.add_argument("--run-dir", help="where the journal and report go (default runs/NAME-TIME)")
        parser.add_argument("--shards", help="shard actors (default: one per CPU Ray has)")
        parser.add_argument("--checkpoint-every", type=checkpoint_every_arg, default=None, metavar="TICKS",
                            help=f"half-hour ticks between checkpoints, what a resume starts from (default "
                                 f"{DEFAULT_CHECKPOINT_EVERY}: a simulated day; 0: none, a resume starts over)")
        parser.add_argument("--json", help="also write the summary as JSON to this path")
        parser.add_argument("--address", help="join an existing Ray cluster instead of starting one")
        parser.add_argument("--resume", metavar="RUN_DIR",
                            help="continue the run in RUN_DIR after its process died (with the Ray head, say): "
                                 "from its newest complete checkpoint and its journal to its last tick, then its "
                                 "report; no scenario or fleet option with it")

    def run(self, args: argparse.Namespace) -> int:
        if args.resume:
            return self._resume(args)
        sc = scenario_of(args)
        config = sc.config
        shards = parse_shards(args)
        out_dir = run_dir(args, sc.name)
        every = DEFAULT_CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every or None
        check_needs(config, address=args.address, run_dir=out_dir, shards=shards, days=sc.days,
                    checkpoint_every=every, report=True)
        runtime.start_ray(address=args.address, num_cpus=None)
        if args.address:
            runtime.check_run_dir_shared(out_dir)
        err.print(f"scenario {sc.name}: {config.hubs:,} hubs from {format_instant(config.start)}, {sc.days:g} days, "
                  f"{len(sc.commands)} event(s); "
                  f"run directory {out_dir}", highlight=False)
        run = ScenarioRun.start(sc, run_dir=out_dir, shards=shards, checkpoint_every=every)
        return self._finish(args, run, out_dir)

    def _resume(self, args: argparse.Namespace) -> int:
        given = ["scenario"] if args.scenario else []
        given += [f"--{o.replace('_', '-')}" for o in RUN_OPTIONS if getattr(args, o) is not None]
        if given:
            what = "a scenario file" if given[0] == "scenario" else f"argument {given[0]}"
            raise UsageError(f"{what}: not allowed with argument --resume (a resumed run keeps the scenario and "
                             "fleet options it was started with)")
        out_dir = Path(args.resume)
        sc = load_resumable(out_dir)  # files only: a wrong directory costs no Ray start
        config = sc.config
        manifest = read_manifest(out_dir)
        # Memory only: the disk already holds the run's checkpoints and history, which an estimate
        # of the whole run would count a second time.
        needs = estimate_needs(config.hubs, shards=manifest.get("shards") or os.cpu_count() or 1,
                               checkpoint_every=manifest.get("checkpoint_every"), days=sc.days)
        err.print(f"this run needs {needs.memory_text()}", highlight=False, markup=False)
        check_memory(config.hubs, args.address, needs=needs)
        runtime.start_ray(address=args.address, num_cpus=None)
        if args.address:
            runtime.check_run_dir_shared(out_dir)
        with err.status(f"resuming {out_dir}…"):
            run = ScenarioRun.resume(sc, run_dir=out_dir)
        c = run.resumed_from
        where = ("from the start: it had no complete checkpoint" if c is None or c < 0
                 else f"from its newest complete checkpoint, at the end of tick {c}")
        err.print(f"scenario {sc.name}: {config.hubs:,} hubs, {sc.days:g} days, {len(sc.commands)} event(s) "
                  f"(journaled); run directory {out_dir}", highlight=False)
        err.print(f"resumed at {format_instant(config.time_of(run.tick))} (tick {run.tick}) {where}; "
                  f"{sc.ticks - run.tick} ticks to go", highlight=False)
        return self._finish(args, run, out_dir)

    def _finish(self, args: argparse.Namespace, run: ScenarioRun, out_dir: Path) -> int:
        """The progress bar while `run` runs to its end, then the summary and where the report is."""
        sc, config = run.sc, run.sc.config
        first = run.tick
        line = placement_line(len(run.sup.shards), run.sup.shards_per_node())
        if line:  # on a cluster: which machine runs how many shards
            err.print(line, highlight=False)
        done = 0
        t = time.perf_counter()
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err,
                      transient=False) as progress:
            task = progress.add_task("building" if first == 0 else format_instant(config.time_of(first)),
                                     total=sc.ticks, completed=first, rate="")

            def on_tick(s: TickSummary) -> None:
                nonlocal done
                done += 1  # ticks run by this process: the rate is its own
                elapsed = time.perf_counter() - t
                progress.update(task, advance=1, description=f"{config.time_of(s.tick + 1):%Y-%m-%d %H:%M}",
                                rate=f"{config.hubs * done / max(elapsed, 1e-9) / 1e6:,.1f}M hub-ticks/s")
                for r in s.recoveries:  # a shard's process (or its whole node) died and was recovered
                    progress.console.print(recovery_line(config, r), highlight=False)

            report = run.finish(on_tick)
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
