"""Outages: a power cut over a network-operator area (or a share of it), a base-station failure in
the North. CSP-wide WAN incidents are network events (network_ops)."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import AREA_CSP, Csp, Fault, WanTech
from twin.model.kernel import IncidentDraw, start_incidents
from twin.model.ops.base import ShardOp
from twin.model.ops.commands import BaseStationFailure, PowerOutage
from twin.model.ops.common import op_uniform
from twin.model.params import TICK_SECONDS
from twin.model.rng import Purpose, fleet_rng


class PowerOutageShard(ShardOp):
    """Every affected premises loses supply within the onset spread; each hub then follows the
    alert rule (AD1 after 3 minutes plus back-off, restoration alert at the end)."""

    cmd: PowerOutage

    def start(self, hs, ctx, tick, s) -> None:
        cmd = self.cmd
        # Where in the area's static order this outage falls: keyed by the operation, so every
        # shard takes the same hubs; the slice costs O(hubs cut), not a pass over the area.
        offset = float(fleet_rng(hs.seed, self.seq, Purpose.EVENT + 16 * self.seq).random())
        rows = hs.area_window(cmd.area, offset, cmd.fraction)
        t0 = tick * TICK_SECONDS
        start = t0 + (op_uniform(hs, self.seq, 1, rows) * cmd.onset_spread_s).astype(np.int64)
        end = start + int(cmd.duration_min * 60) + (op_uniform(hs, self.seq, 2, rows)
                                                   * cmd.restore_spread_min * 60).astype(np.int64)
        ip = ctx.config.params.incidents
        backoff = ip.outage_alert_backoff_s if cmd.alert_backoff_s is None else cmd.alert_backoff_s
        draw = IncidentDraw(bit=int(Fault.POWER), hub=hs.offset + rows, start_s=start, end_s=end,
                            alert_backoff_s=(op_uniform(hs, self.seq, 3, rows) * (backoff + 1)).astype(np.int64),
                            restore_backoff_s=(op_uniform(hs, self.seq, 4, rows)
                                               * (ip.restore_alert_backoff_s + 1)).astype(np.int64))
        # Premises already unpowered (or due to be) when this cut begins are in one stretch with
        # it: they count once, as already unpowered, and raise no second AD1.
        self.affected = start_incidents(hs, draw, ctx.config)
        self.already = int(rows.size) - self.affected
        self.in_area = int(hs.area_start[cmd.area + 1] - hs.area_start[cmd.area])

    def report(self, hs, tick) -> dict[str, Any]:
        return {"premises_in_area": self.in_area, "premises_cut": self.affected,
                "premises_already_unpowered": self.already}


class BaseStationShard(ShardOp):
    cmd: BaseStationFailure

    def start(self, hs, ctx, tick, s) -> None:
        n = hs.n_hubs
        c = hs.cols
        on_cells = (np.isin(c["cell"][:n], self.cmd.cells) & (AREA_CSP[c["area"][:n]] == Csp.NORTH)
                    & (c["wan"][:n] == WanTech.LRR))
        rows = np.flatnonzero(on_cells)
        t0 = tick * TICK_SECONDS
        k = rows.size
        end = np.full(k, t0 + int(self.cmd.duration_min * 60), np.int64)
        draw = IncidentDraw(bit=int(Fault.INCIDENT), hub=hs.offset + rows, start_s=np.full(k, t0), end_s=end,
                            alert_backoff_s=np.zeros(k, np.int64), restore_backoff_s=np.zeros(k, np.int64))
        self.affected = start_incidents(hs, draw, ctx.config)

    def report(self, hs, tick) -> dict[str, Any]:
        return {"hubs_affected": self.affected}
