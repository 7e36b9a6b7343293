"""Market-wide half-hourly settlement (MHHS): ESMEs move, in waves, to daily retrieval of their
half-hourly data (shared/domain/CAPACITY.md, "Market-wide half-hourly settlement").

The shard half picks its ESMEs once, at the start, and orders them by wave; a wave sets
`Status.HH_SETTLEMENT` on that wave's rows, so its cost is the meters it moves, never the fleet.
From then on the tick kernel's daily-read pass (twin.model.kernel.slot_pass) counts one
`MessageType.SETTLEMENT_READ` a day per migrated ESME it reaches, by CSP, link and base station
(twin.model.traffic.count_messages), where the network's queues see it.

Which wave an ESME is in is a uniform keyed by the operation and the hub id (op_uniform), so the
selection is the same for any shard layout. The fleet half keeps the schedule: wave 0 applies with
the start, each later wave goes to the shards as a control LAG ticks ahead of its tick, so pausing
holds the next wave back (on resume it follows at once, the rest keep their spacing) and a
cancelled migration keeps the meters it has moved (settlement does not move back)."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import AREA_CSP, Status
from twin.model.ops.base import LAG, Control, FleetOp, ShardOp
from twin.model.ops.commands import MhhsMigration
from twin.model.ops.common import days_to_ticks, op_uniform
from twin.model.ops.progress import MhhsMigrationProgress, OperationState
from twin.model.reach import on_dcc
from twin.model.state import HubState


def wave_of(u: np.ndarray, share: float, waves: int) -> np.ndarray:
    """The wave (0 .. waves-1) of ESMEs with keys `u` (uniform, below `share`): equal parts of
    the migrated share, so each wave moves about share / waves of the selected ESMEs."""
    return np.minimum((u / share * waves).astype(np.int64), waves - 1)


class MhhsShard(ShardOp):
    cmd: MhhsMigration

    def start(self, hs, ctx, tick, s) -> None:
        n = hs.n_hubs
        c = hs.cols
        area = c["area"][:n]
        sel = (area != 0) & on_dcc(c["smets"][:n]) & ((c["status"][:n] & Status.DUMB) == 0)
        if self.cmd.regions:
            sel &= np.isin(AREA_CSP[area], self.cmd.regions)
        if self.cmd.suppliers:
            sel &= np.isin(c["supplier"][:n], self.cmd.suppliers)
        rows = np.flatnonzero(sel)
        u = op_uniform(hs, self.seq, 0, rows)
        keep = u < self.cmd.share
        rows, wave = rows[keep], wave_of(u[keep], self.cmd.share, self.cmd.waves)
        order = np.lexsort((rows, wave))
        self.rows = rows[order]
        # Rows of wave k: self.rows[edges[k]:edges[k + 1]].
        self.edges = np.searchsorted(wave[order], np.arange(self.cmd.waves + 1)).astype(np.int64)
        self.migrated = 0
        self.first_pending = True  # wave 0 applies in the start tick, unless paused by then

    def control(self, action, data, hs, ctx, tick, s) -> None:
        if action == "wave":
            self._wave(hs, int(data["index"]))
        else:
            super().control(action, data, hs, ctx, tick, s)

    def step(self, hs, ctx, tick, s, up_area) -> None:
        if self.first_pending:
            self.first_pending = False
            if self.state == OperationState.RUNNING:
                self._wave(hs, 0)

    def _wave(self, hs: HubState, k: int) -> None:
        rows = self.rows[self.edges[k]:self.edges[k + 1]]
        status = hs.cols["status"][rows]
        # A meter gone dumb since the start (SMETS1 not enrolled after a switch) cannot be read;
        # one another migration moved already is not counted twice.
        fresh = rows[(status & (Status.HH_SETTLEMENT | Status.DUMB)) == 0]
        hs.change(fresh, status_set=Status.HH_SETTLEMENT)
        self.migrated += int(fresh.size)

    def report(self, hs, tick) -> dict[str, Any]:
        return {"targeted": int(self.rows.size), "migrated": self.migrated}


class MhhsFleet(FleetOp):
    """The wave schedule: which waves have gone to the shards, at which ticks."""

    cmd: MhhsMigration

    def __init__(self, name: str, cmd: MhhsMigration, config) -> None:
        super().__init__(name, cmd, config)
        self.wave_ticks: list[int] = []  # the tick each wave applied (or will apply) at
        self.next_due = cmd.at  # the tick the next wave is due at
        self.begun = False

    def spacing(self) -> int:
        return days_to_ticks(self.cmd.spacing_days)

    def _next_tick(self) -> int:
        return -1 if self.done or len(self.wave_ticks) >= self.cmd.waves else self.next_due

    def progress(self, counters: dict[str, int] | None = None) -> MhhsMigrationProgress:
        c = self.counters if counters is None else counters
        return MhhsMigrationProgress(targeted=c.get("targeted", 0), migrated=c.get("migrated", 0),
                                     waves=self.cmd.waves, waves_done=c.get("waves_done", 0),
                                     next_wave_tick=c.get("next_wave_tick", -1))

    def observe(self, tick, rep, planner) -> list[Control]:
        if rep is not None:
            # The schedule is the fleet's own: the shards' counts are summed, a wave count is not.
            rep = {**rep, "waves_done": sum(t <= tick for t in self.wave_ticks), "next_wave_tick": self._next_tick()}
        super().observe(tick, rep, planner)
        if not self.begun and tick >= self.cmd.at:
            self.begun = True
            if self.state == OperationState.RUNNING:  # not paused before it started: wave 0 went with it
                self.wave_ticks.append(self.cmd.at)
                self.next_due = self.cmd.at + self.spacing()
        if self.state == OperationState.CANCELLED:
            # Waves sent for ticks after the cancel never applied on the shards.
            self.wave_ticks = [t for t in self.wave_ticks if t <= tick]
            return []
        if self.done or not self.begun:
            return []
        if self.state == OperationState.PAUSED:
            self.next_due = max(self.next_due, tick + LAG + 1)
            return []
        if len(self.wave_ticks) < self.cmd.waves:
            if tick + LAG >= self.next_due:
                at = tick + LAG
                self.wave_ticks.append(at)
                self.next_due = at + self.spacing()
                return [Control(self.name, "wave", {"index": len(self.wave_ticks) - 1})]
            return []
        if tick >= self.wave_ticks[-1]:
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        return []
