"""Supplier switching: one change of supplier, a market-churn campaign, and a supplier failure
whose customers move to a Supplier of Last Resort under a daily transfer cap."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import SUPPLIERS, Flag
from twin.model.ops.base import Control, FleetOp, ShardContext, ShardOp
from twin.model.ops.commands import ChurnCampaign, SupplierFailure, SupplierSwitch
from twin.model.ops.common import (
    CredentialSwaps,
    block_demand,
    days_to_ticks,
    issue_budget,
    op_uniform,
    sort_by_block,
    take_by_block,
)
from twin.model.ops.progress import (
    ChurnCampaignProgress,
    OperationState,
    SupplierFailureProgress,
    SupplierSwitchProgress,
    swaps_of,
)
from twin.model.params import DAYS_PER_MONTH, HALF_HOURS_PER_DAY
from twin.model.rng import Purpose, fleet_rng
from twin.model.state import HubState


def _swaps(ctx: ShardContext) -> CredentialSwaps:
    return CredentialSwaps(days_to_ticks(ctx.config.params.events.cos_deadline_days))


def _switch_rows(hs: HubState, rows: np.ndarray, to: np.ndarray | int, fuel: str) -> None:
    """Move premises to a supplier for one fuel or both (gas only where there is gas)."""
    if rows.size == 0:
        return
    to = np.broadcast_to(np.asarray(to, np.uint8), rows.shape)
    updates: dict[str, Any] = {}
    if fuel in ("electricity", "dual"):
        updates["supplier"] = to
    if fuel in ("gas", "dual"):
        has_gas = (hs.cols["flags"][rows] & Flag.HAS_GAS) != 0
        updates["gas_supplier"] = np.where(has_gas, to, hs.cols["gas_supplier"][rows]).astype(np.uint8)
    hs.change(rows, **updates)


class SwitchShard(ShardOp):
    cmd: SupplierSwitch

    def start(self, hs, ctx, tick, s) -> None:
        self.swaps = _swaps(ctx)
        self.mine = bool(hs.holds(np.array([self.cmd.hub]))[0])
        self.pending_start = self.mine
        self.withdrawn = False
        if not self.mine:
            # Only the shard holding the premises takes part; the others retire at once.
            self.state = OperationState.DONE

    def step(self, hs, ctx, tick, s, up_area) -> None:
        if self.pending_start:
            self.pending_start = False
            if self.cmd.to_supplier in ctx.failed_suppliers:
                # The gaining supplier failed after this switch was accepted: as with a switch
                # pending when a supplier fails, it is withdrawn and the customer stays.
                self.withdrawn = True
                return
            rows = hs.local(np.array([self.cmd.hub]))
            _switch_rows(hs, rows, self.cmd.to_supplier, self.cmd.fuel)
            self.swaps.switched(hs, rows, tick, s, up_area)
        else:
            self.swaps.step(hs, tick, s, up_area)

    def report(self, hs, tick) -> dict[str, Any]:
        # A switch cancelled before its start never happened: it counts as no switch.
        if not self.mine:
            return {}
        withdrawn = int(self.withdrawn)
        return {"switches": int(not self.pending_start) - withdrawn, "withdrawn": withdrawn, **self.swaps.report()}

    def finished(self) -> bool:
        # Switched, and its credential swap settled (smart, dumb or failed): the final counts go
        # out in this tick's report.
        return (not self.pending_start and self.swaps.rows.size == 0) or super().finished()


class SwitchingFleet(FleetOp):
    """Finishes when every switch is settled: smart, dumb or failed."""

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if rep is None or self.done:
            return []
        if rep.get("withdrawn"):
            self.state = OperationState.FAILED
            self.reason = "the gaining supplier failed before the switch; the customer stays with their supplier"
            return []
        if self._finished(tick, rep):
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        return []

    def progress(self, counters: dict[str, int] | None = None) -> SupplierSwitchProgress | ChurnCampaignProgress:
        c = self.counters if counters is None else counters
        return SupplierSwitchProgress(switches=c.get("switches", 0), withdrawn=c.get("withdrawn", 0),
                                      swaps=swaps_of(c))

    def _finished(self, tick: int, rep: dict[str, Any]) -> bool:
        return rep.get("pending", 0) == 0 and rep.get("switches", 0) == (
            rep.get("switched_smart", 0) + rep.get("dumb", 0) + rep.get("failed", 0))


class ChurnShard(ShardOp):
    cmd: ChurnCampaign

    def start(self, hs, ctx, tick, s) -> None:
        self.swaps = _swaps(ctx)
        self.end = self.cmd.at + days_to_ticks(self.cmd.days)
        self.switches = 0
        self.weights = np.array([x.market_share for x in SUPPLIERS])

    def step(self, hs, ctx, tick, s, up_area) -> None:
        self.swaps.step(hs, tick, s, up_area)
        # Paused: credential swaps under way finish, no premises switches. The campaign keeps its
        # end, so a pause skips those ticks' switches rather than moving them later.
        if tick >= self.end or self.state != OperationState.RUNNING:
            return
        # How many switch this tick, then which premises and to whom: one fleet-wide draw.
        rng = fleet_rng(hs.seed, tick, Purpose.EVENT + 16 * self.seq)
        lam = self.cmd.switches_per_month / (DAYS_PER_MONTH * HALF_HOURS_PER_DAY)
        k = int(rng.poisson(lam))
        hubs = rng.integers(0, hs.n_hubs_fleet, k)
        u = rng.random((2, k))
        mine = hs.holds(hubs)
        if not mine.any():
            return
        hubs, u = hubs[mine], u[:, mine]
        _, first = np.unique(hubs, return_index=True)
        first = np.sort(first)
        rows, u = hs.local(hubs[first]), u[:, first]
        w = self.weights.copy()
        for code in ctx.failed_suppliers:
            w[code - 1] = 0.0
        cum = np.cumsum(w) / w.sum()
        current = hs.cols["supplier"][rows]
        to = (np.searchsorted(cum, u[0], side="right") + 1).astype(np.uint8)
        again = (np.searchsorted(cum, u[1], side="right") + 1).astype(np.uint8)
        to = np.where(to == current, again, to)
        move = to != current
        rows, to = rows[move], to[move]
        # A dual-fuel customer takes both fuels along.
        dual = hs.cols["gas_supplier"][rows] == hs.cols["supplier"][rows]
        _switch_rows(hs, rows[dual], to[dual], "dual")
        _switch_rows(hs, rows[~dual], to[~dual], "electricity")
        self.switches += int(rows.size)
        self.swaps.switched(hs, rows, tick, s, up_area)

    def report(self, hs, tick) -> dict[str, Any]:
        return {"switches": self.switches, **self.swaps.report()}


class ChurnFleet(SwitchingFleet):
    cmd: ChurnCampaign

    def _finished(self, tick, rep) -> bool:
        return tick >= self.cmd.at + days_to_ticks(self.cmd.days) and rep.get("pending", 0) == 0

    def progress(self, counters: dict[str, int] | None = None) -> ChurnCampaignProgress:
        # Planned at the campaign's mean rate, the one its shards draw switches at.
        planned = round(self.cmd.switches_per_month * self.cmd.days / DAYS_PER_MONTH)
        c = self.counters if counters is None else counters
        return ChurnCampaignProgress(switches=c.get("switches", 0), planned=planned, swaps=swaps_of(c))


class SolrShard(ShardOp):
    """The failed supplier's customers, queued per block in a fixed random order."""

    cmd: SupplierFailure

    def start(self, hs, ctx, tick, s) -> None:
        ctx.failed_suppliers.add(self.cmd.supplier)
        ctx.solr_of[self.cmd.supplier] = self.cmd.solr
        self.swaps = _swaps(ctx)
        n = hs.n_hubs
        c = hs.cols
        rows = np.flatnonzero((c["supplier"][:n] == self.cmd.supplier) | (c["gas_supplier"][:n] == self.cmd.supplier))
        order = sort_by_block(hs, rows, op_uniform(hs, self.seq, 0, rows))
        self.rows = rows[order]
        self.moved = np.zeros(self.rows.size, bool)
        self.budget: dict[str, np.ndarray] | None = None
        self.customers = int(self.rows.size)

    def control(self, action, data, hs, ctx, tick, s) -> None:
        if action == "budget":
            self.budget = data
        else:
            super().control(action, data, hs, ctx, tick, s)

    def _still_customer(self, hs: HubState) -> np.ndarray:
        c = hs.cols
        return ~self.moved & ((c["supplier"][self.rows] == self.cmd.supplier)
                              | (c["gas_supplier"][self.rows] == self.cmd.supplier))

    def step(self, hs, ctx, tick, s, up_area) -> None:
        self.swaps.step(hs, tick, s, up_area)
        if self.state != OperationState.RUNNING or self.budget is None:
            self.budget = None
            return
        take = take_by_block(hs, self.rows, self._still_customer(hs), self.budget["blocks"],
                             self.budget["budget"][:, 0])
        rows = self.rows[take]
        c = hs.cols
        elec = c["supplier"][rows] == self.cmd.supplier
        gas = c["gas_supplier"][rows] == self.cmd.supplier
        # To the SoLR, or where its customers go if it has failed since (a chain of failures).
        solr = ctx.last_resort(self.cmd.solr)
        _switch_rows(hs, rows[elec & gas], solr, "dual")
        _switch_rows(hs, rows[elec & ~gas], solr, "electricity")
        _switch_rows(hs, rows[~elec & gas], solr, "gas")
        self.moved[take] = True
        self.swaps.switched(hs, rows, tick, s, up_area)
        self.budget = None

    def report(self, hs, tick) -> dict[str, Any]:
        base = {"customers": self.customers, "moved": int(self.moved.sum()), **self.swaps.report()}
        # Per-block demand only on the ticks the fleet sets the next day's allowance.
        if (tick - self.cmd.at) % HALF_HOURS_PER_DAY == 0 or not hasattr(self, "_remaining"):
            remaining = self._still_customer(hs)
            self._remaining = int(remaining.sum())
            blocks, demand = block_demand(hs, self.rows, remaining)
            return {**base, "remaining": self._remaining, "blocks": blocks, "block_demand": demand}
        return {**base, "remaining": self._remaining}


class SolrFleet(FleetOp):
    """Issues each day's transfer allowance (the cap) across blocks by their remaining customers."""

    cmd: SupplierFailure

    def on_accept(self, planner) -> None:
        super().on_accept(planner)
        planner.failed_suppliers[self.cmd.supplier] = (self.cmd.at, self.cmd.solr, self.name)

    def progress(self, counters: dict[str, int] | None = None) -> SupplierFailureProgress:
        c = self.counters if counters is None else counters
        return SupplierFailureProgress(customers=c.get("customers", 0), moved=c.get("moved", 0),
                                       remaining=c.get("remaining", 0), swaps=swaps_of(c))

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if rep is None or self.done:
            return []
        if rep["remaining"] == 0 and rep["pending"] == 0:
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        if self.state == OperationState.RUNNING and (tick - self.cmd.at) % HALF_HOURS_PER_DAY == 0 and rep["remaining"]:
            budget = issue_budget(rep["blocks"], rep["block_demand"], np.array([self.cmd.daily_cap]))
            return [Control(self.name, "budget", budget)]
        return []
