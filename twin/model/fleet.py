"""A whole fleet in one process: the model without Ray, for unit tests and small tools.

The engine does the same with the blocks spread over shard actors; both use `kernel.step` per
state, `summary.merge` + `summary.finish` per tick and one `FleetPlanner`, so they agree bit for
bit. `splits` cuts the fleet into several states here to test exactly that without Ray."""

from __future__ import annotations

import hashlib
from typing import Any

from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.kernel import slot_bounds, step
from twin.model.ops.commands import Command, parse_command
from twin.model.ops.rollout import fleet_census, shard_census
from twin.model.ops.runtime import FleetOp, FleetPlanner, ShardOps
from twin.model.ops.validation import validate
from twin.model.state import HubState
from twin.model.summary import TickSummary, finish, merge


def fleet_hash(block_digests: list[bytes]) -> str:
    """SHA-256 over the per-block digests in hub-id order: the state hash of a fleet."""
    h = hashlib.sha256()
    for d in block_digests:
        h.update(d)
    return h.hexdigest()


class LocalFleet:
    """The fleet as one or more in-process states."""

    def __init__(self, config: FleetConfig, *, splits: int = 1):
        self.config = config
        self.bounds = slot_bounds(config)
        nb = config.n_blocks
        cuts = [round(i * nb / splits) for i in range(splits + 1)]
        self.states: list[HubState] = [
            generate(config, cuts[i], cuts[i + 1] - cuts[i]) for i in range(splits) if cuts[i + 1] > cuts[i]
        ]
        self.ops = [ShardOps(config) for _ in self.states]
        self.planner = FleetPlanner(config)
        self.tick = 0  # next tick to run

    @property
    def network(self):
        return self.ops[0].network

    def submit(self, event: dict[str, Any], *, relative_to: int | None = None) -> FleetOp | None:
        """Validate and accept an operator event (as the engine does, without a journal)."""
        cmd = parse_command(event, self.config, now_tick=self.tick, relative_to=relative_to)
        return self.accept(cmd)

    def accept(self, cmd: Command) -> FleetOp | None:
        validate(cmd, self.planner, census=self.census)
        return self.planner.accept(cmd)

    def census(self, cmd: Command) -> dict[str, int]:
        """{firmware version: devices} a rollout's selector matches now."""
        return fleet_census(shard_census(st, cmd, ops.versions) for st, ops in zip(self.states, self.ops, strict=True))

    def step(self) -> TickSummary:
        controls = self.planner.controls_for(self.tick)
        parts = [step(st, self.tick, self.config, ops, controls, self.bounds)
                 for st, ops in zip(self.states, self.ops, strict=True)]
        summary = finish(merge(parts), self.config)
        self.planner.observe(summary)
        self.tick += 1
        return summary

    def run(self, ticks: int) -> list[TickSummary]:
        return [self.step() for _ in range(ticks)]

    def state_hash(self) -> str:
        return fleet_hash([d for st in self.states for d in st.block_digests()])

    def state_for(self, hub: int) -> HubState:
        for st in self.states:
            if st.offset <= hub < st.offset + st.n_hubs:
                return st
        raise KeyError(hub)
