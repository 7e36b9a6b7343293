"""`twin hub`: one hub of a fleet described at its start, by index or comms hub device id (no Ray)."""

from __future__ import annotations

import argparse
import json

from twin.cli.base import Command, UsageError, console, fleet_args, fleet_config
from twin.model.generator import generate
from twin.model.ids import parse_hub_ref
from twin.model.network import NetworkPlan
from twin.model.query import hub_record
from twin.util.grammar import GrammarError, shown


class HubCommand(Command):
    name = "hub"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("hub_id", help="hub index (0..N-1) or comms hub device id (EUI-64)")
        fleet_args(parser, "1M")

    def run(self, args: argparse.Namespace) -> int:
        config = fleet_config(args)
        try:
            hub = parse_hub_ref(args.hub_id, config.seed)
        except GrammarError as e:
            raise UsageError(f"HUB_ID: {e}") from None
        if not 0 <= hub < config.hubs:
            raise UsageError(f"HUB_ID: {shown(args.hub_id)} is not in this fleet ({config.hubs:,} hubs, "
                             f"seed {config.seed})")
        block = hub // config.block_size
        state = generate(config, block, 1)  # one block is enough to describe a hub at the start
        rec = hub_record(state, config, NetworkPlan().up_by_area(0), hub, -1)
        console.print_json(json.dumps(rec))
        return 0
