"""An on-demand read campaign: DCC Users read a share of the meters on the DCC, each on average
every `interval_min` minutes for `duration_min` (twin.model.ops.commands.OnDemandReads).

Each meter's reads are drawn once, at the start: how many (Poisson with mean duration /
interval, the inverse of its CDF on a uniform keyed by the operation and the hub) and at which
ticks (uniform over the campaign, one keyed uniform per read). They are kept sorted by tick, so a
tick sends exactly its own reads: its cost is the reads it sends, and the campaign's memory is
its reads, never the fleet. Keys are per hub, so the reads are the same for any shard layout.

A read is answered when its hub is reachable at that tick (one `MessageType.ON_DEMAND_READ`,
counted by CSP, link and base station for the network's queues); otherwise it fails."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import AREA_CSP, MessageType
from twin.model.ops.base import Control, FleetOp, ShardOp
from twin.model.ops.commands import MAX_READS_PER_METER, OnDemandReads
from twin.model.ops.common import op_uniform
from twin.model.ops.progress import OnDemandReadsProgress, OperationState
from twin.model.params import TICK_SECONDS
from twin.model.reach import on_dcc, reachable
from twin.model.traffic import count_rows


def duration_ticks(cmd: OnDemandReads) -> int:
    return max(1, round(cmd.duration_min * 60 / TICK_SECONDS))


def poisson_counts(u: np.ndarray, mean: float, cap: int) -> np.ndarray:
    """Poisson(mean) counts from uniforms `u` by inverting the CDF (at most `cap`)."""
    k = np.zeros(u.size, np.int64)
    p = np.exp(-mean)
    cdf = p
    for j in range(1, cap + 1):
        k += u >= cdf
        p *= mean / j
        cdf += p
    return k


class ReadsShard(ShardOp):
    cmd: OnDemandReads

    def start(self, hs, ctx, tick, s) -> None:
        n = hs.n_hubs
        c = hs.cols
        area = c["area"][:n]
        sel = (area != 0) & on_dcc(c["smets"][:n])
        if self.cmd.regions:
            sel &= np.isin(AREA_CSP[area], self.cmd.regions)
        if self.cmd.areas:
            sel &= np.isin(area, self.cmd.areas)
        rows = np.flatnonzero(sel)
        rows = rows[op_uniform(hs, self.seq, 0, rows) < self.cmd.share]
        span = duration_ticks(self.cmd)
        mean = self.cmd.duration_min / self.cmd.interval_min
        count = poisson_counts(op_uniform(hs, self.seq, 1, rows), mean, 2 * MAX_READS_PER_METER)
        read_rows, read_ticks = [], []
        for j in range(int(count.max(initial=0))):
            r = rows[count > j]
            read_rows.append(r)
            read_ticks.append(tick + (op_uniform(hs, self.seq, 2 + j, r) * span).astype(np.int64))
        rr = np.concatenate(read_rows) if read_rows else np.zeros(0, np.int64)
        rt = np.concatenate(read_ticks) if read_ticks else np.zeros(0, np.int64)
        order = np.lexsort((rr, rt))
        self.read_rows, self.read_ticks = rr[order], rt[order]
        self.targeted = int(rows.size)
        self.next = 0  # reads before this index are done
        self.answered = 0
        self.failed = 0

    def step(self, hs, ctx, tick, s, up_area) -> None:
        if self.state != OperationState.RUNNING:
            # Paused: the reads due meanwhile are not sent (a paused campaign skips them).
            self.next = int(np.searchsorted(self.read_ticks, tick, side="right"))
            return
        end = int(np.searchsorted(self.read_ticks, tick, side="right"))
        rows = self.read_rows[self.next:end]
        self.next = end
        if rows.size == 0:
            return
        ok = reachable(hs, rows, up_area)
        count_rows(s, MessageType.ON_DEMAND_READ, hs, rows[ok])
        self.answered += int(ok.sum())
        self.failed += int((~ok).sum())

    def report(self, hs, tick) -> dict[str, Any]:
        return {"targeted": self.targeted, "planned": int(self.read_rows.size), "answered": self.answered,
                "failed": self.failed}


class ReadsFleet(FleetOp):
    """Done when the campaign's time is over."""

    cmd: OnDemandReads

    def end_tick(self) -> int:
        return self.cmd.at + duration_ticks(self.cmd)

    def progress(self, counters: dict[str, int] | None = None) -> OnDemandReadsProgress:
        c = self.counters if counters is None else counters
        return OnDemandReadsProgress(targeted=c.get("targeted", 0), planned=c.get("planned", 0),
                                     answered=c.get("answered", 0), failed=c.get("failed", 0),
                                     end_tick=self.end_tick())

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if tick >= self.end_tick() - 1 and not self.done:
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        return []
