"""`twin submit`: a scenario run on a Ray cluster as a Ray job (whose entrypoint is `twin run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.base import Command, console, err, optional, parse_days, parse_hubs, parse_seed, parse_shards, run_dir
from twin.launcher import cluster
from twin.studies.scenario import load_scenario


class SubmitCommand(Command):
    name = "submit"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario")
        parser.add_argument("--address", required=True, help="the cluster's job server, e.g. http://127.0.0.1:8265")
        parser.add_argument("--hubs")
        parser.add_argument("--seed")
        parser.add_argument("--shards")
        parser.add_argument("--days")
        parser.add_argument("--run-dir", help="where the head writes the report: a path, file:// or another URI")
        parser.add_argument("--no-wait", action="store_true", help="print the job id and return")
        parser.add_argument("--python", default="python",
                            help="the cluster's Python with twin installed (default python)")

    def run(self, args: argparse.Namespace) -> int:
        path = Path(args.scenario)
        # Every option is checked before the cluster hears of the job.
        hubs = optional(parse_hubs, args.hubs)
        seed = optional(parse_seed, args.seed)
        days = optional(parse_days, args.days)
        shards = parse_shards(args)
        load_scenario(path, hubs=hubs, seed=seed, days=days)  # reject a bad file before the cluster sees it
        res = cluster.submit(path, address=args.address, run_dir=str(run_dir(args, path.stem)), hubs=hubs, seed=seed,
                             shards=shards, days=days, wait=not args.no_wait,
                             log=lambda m: err.print(m, highlight=False), python=args.python)
        if args.no_wait:
            console.print(res["job_id"])
            return 0
        err.print(res["logs"][-3000:], highlight=False, markup=False)
        console.print(f"job {res['job_id']}: {res['status']}; report in {res['run_dir']}", highlight=False)
        return 0 if res["status"] == "SUCCEEDED" else 1
