"""`twin compare`: two runs (a run and its branch) side by side, and a report of the comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.base import Command, UsageError, console, existing_run_dir, print_rows
from twin.engine.compare import compare_runs
from twin.reporting.compare import write_comparison


class CompareCommand(Command):
    name = "compare"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_a", metavar="RUN_A")
        parser.add_argument("run_b", metavar="RUN_B")
        parser.add_argument("--out", help="where comparison.html/json go (default RUN_B/compare-NAME_OF_A)")

    def run(self, args: argparse.Namespace) -> int:
        a, b = existing_run_dir(args.run_a, "RUN_A"), existing_run_dir(args.run_b, "RUN_B")
        try:
            cmp = compare_runs(a, b)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
        div = cmp["divergence_tick"]
        console.print(f"{cmp['a']['name']} vs {cmp['b']['name']}: common ticks {cmp['common_ticks'][0]}-"
                      f"{cmp['common_ticks'][1]}; " + ("identical" if div is None else
                                                        f"first difference at tick {div} ({cmp['divergence_time']} UTC) "
                                                        f"in {', '.join(cmp['changed_at_divergence']) or 'breakdowns'}"),
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
