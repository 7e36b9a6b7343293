"""A whole fleet in one process: the model without Ray, for unit tests and small tools.

The engine does the same with the blocks spread over shard actors; both use `kernel.step` per
state and `summary.merge` + `summary.finish` per tick, so they agree bit for bit."""

from __future__ import annotations

import hashlib

from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.kernel import slot_bounds, step
from twin.model.network import NetworkPlan
from twin.model.state import HubState
from twin.model.summary import TickSummary, finish, merge


def fleet_hash(block_digests: list[bytes]) -> str:
    """SHA-256 over the per-block digests in hub-id order: the state hash of a fleet."""
    h = hashlib.sha256()
    for d in block_digests:
        h.update(d)
    return h.hexdigest()


class LocalFleet:
    """The fleet as one or more in-process states (several only to test shard independence)."""

    def __init__(self, config: FleetConfig, *, splits: int = 1):
        self.config = config
        self.network = NetworkPlan()
        self.bounds = slot_bounds(config)
        nb = config.n_blocks
        cuts = [round(i * nb / splits) for i in range(splits + 1)]
        self.states: list[HubState] = [
            generate(config, cuts[i], cuts[i + 1] - cuts[i]) for i in range(splits) if cuts[i + 1] > cuts[i]
        ]
        self.tick = 0  # next tick to run

    def step(self) -> TickSummary:
        parts = [step(st, self.tick, self.config, self.network, self.bounds) for st in self.states]
        self.tick += 1
        return finish(merge(parts), self.config)

    def run(self, ticks: int) -> list[TickSummary]:
        return [self.step() for _ in range(ticks)]

    def state_hash(self) -> str:
        return fleet_hash([d for st in self.states for d in st.block_digests()])

    def state_for(self, hub: int) -> HubState:
        for st in self.states:
            if st.offset <= hub < st.offset + st.n_hubs:
                return st
        raise KeyError(hub)
