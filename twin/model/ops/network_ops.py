"""Network events: a 2G/3G switch-off, the 4G hub swap programme, VWAN fallback, CSP incidents."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import (
    AREA_CSP,
    Csp,
    DeviceType,
    Fault,
    Flag,
    MessageType,
    Variant,
    WanTech,
    model_code,
    models_of,
)
from twin.model.ops.base import Control, FleetOp, ShardOp
from twin.model.ops.commands import (
    BaseStationFailure,
    CspIncident,
    NetworkSwitchOff,
    PowerOutage,
    SwapProgramme,
    VwanFallback,
)
from twin.model.ops.common import (
    block_demand,
    days_to_ticks,
    issue_budget,
    op_uniform,
    sort_by_block,
    take_by_block,
)
from twin.model.ops.progress import (
    TICKS_RUN,
    TICKS_TOTAL,
    BaseStationFailureProgress,
    CspIncidentProgress,
    FieldProgrammeProgress,
    NetworkSwitchOffProgress,
    OperationState,
    PowerOutageProgress,
    Progress,
)
from twin.model.params import HALF_HOURS_PER_DAY, TICK_SECONDS
from twin.model.reach import on_dcc
from twin.model.state import HubState
from twin.model.summary import TickSummary
from twin.model.traffic import count_rows

CSP_TECHS = {Csp.NORTH: (WanTech.LRR,), Csp.CENTRAL: (WanTech.G2, WanTech.G3),
             Csp.SOUTH: (WanTech.G2, WanTech.G3)}
_TOSHIBA_4G = model_code(DeviceType.CH, "Toshiba", "4G CH")


class SwitchOffShard(ShardOp):
    cmd: NetworkSwitchOff

    def start(self, hs, ctx, tick, s) -> None:
        ctx.network.switch_off(Csp(self.cmd.region), WanTech(self.cmd.technology), tick)
        self.state = OperationState.DONE


class InstantFleet(FleetOp):
    """Applies in one tick: done once the shards have applied it."""

    cmd: NetworkSwitchOff

    def schedule_network(self, plan) -> None:
        plan.switch_off(Csp(self.cmd.region), WanTech(self.cmd.technology), self.cmd.at)

    def progress(self, counters: dict[str, int] | None = None) -> NetworkSwitchOffProgress:
        c = self.counters if counters is None else counters
        return NetworkSwitchOffProgress(off_tick=self.cmd.at).seeing(
            {k: c[k] for k in ("hubs_on_network", "hubs_cut_off") if k in c})

    def watch(self, s: TickSummary) -> dict[str, int]:
        # DCC hubs in the region on the technology: before the switch-off those it will cut off
        # (a swap programme moves some first), at its tick those it cut off (a hub keeps its WAN
        # technology when its network goes, dark). It is done then, and observed no more.
        if self.never_started:
            return {}
        on = int(s.hubs_by_wan[self.cmd.region, self.cmd.technology])
        if s.tick < self.cmd.at:
            return {"hubs_on_network": on}
        return {"hubs_on_network": on, "hubs_cut_off": on}

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if tick >= self.cmd.at and not self.done:
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        return []


class CspIncidentShard(ShardOp):
    cmd: CspIncident

    def start(self, hs, ctx, tick, s) -> None:
        until = tick + max(1, round(self.cmd.duration_min * 60 / TICK_SECONDS))
        techs = CSP_TECHS[Csp(self.cmd.region)] + ((WanTech.G4,) if self.cmd.include_4g else ())
        for tech in techs:
            ctx.network.switch_off(Csp(self.cmd.region), tech, tick, until=until)
        self.state = OperationState.DONE


class TimedFleet(FleetOp):
    """Done when its end time has passed (outages, incidents)."""

    cmd: PowerOutage | BaseStationFailure | CspIncident

    def schedule_network(self, plan) -> None:
        if isinstance(self.cmd, CspIncident):
            until = self.cmd.at + max(1, round(self.cmd.duration_min * 60 / TICK_SECONDS))
            for tech in CSP_TECHS[Csp(self.cmd.region)] + ((WanTech.G4,) if self.cmd.include_4g else ()):
                plan.switch_off(Csp(self.cmd.region), tech, self.cmd.at, until=until)

    def end_tick(self) -> int:
        return self.cmd.at + max(1, round(self.cmd.duration_min * 60 / TICK_SECONDS)) + 1

    def progress(self, counters: dict[str, int] | None = None) -> Progress:
        c, end = self.counters if counters is None else counters, self.end_tick()
        p: Progress
        if self.cmd.kind == "power_outage":
            p = PowerOutageProgress(premises_in_area=c.get("premises_in_area", 0),
                                    premises_cut=c.get("premises_cut", 0),
                                    premises_already_unpowered=c.get("premises_already_unpowered", 0), end_tick=end)
        elif self.cmd.kind == "base_station_failure":
            p = BaseStationFailureProgress(hubs_affected=c.get("hubs_affected", 0), end_tick=end)
        else:
            p = CspIncidentProgress(end_tick=end)
        seen = {TICKS_RUN: c.get(TICKS_RUN, 0), TICKS_TOTAL: end - self.cmd.at}
        if "hubs_cut_off" in c:
            seen["hubs_cut_off"] = c["hubs_cut_off"]
        return p.seeing(seen)

    def watch(self, s: TickSummary) -> dict[str, int]:
        # Its clock: ticks from its start to the tick observed, held once it is done (a cancel's
        # shard halves report for LAG ticks more) and at most its whole span.
        if s.tick < self.cmd.at or self.never_started:
            return {}
        run = self.counters.get(TICKS_RUN, 0) if self.done else min(s.tick - self.cmd.at, self.end_tick() - self.cmd.at)
        out = {TICKS_RUN: run}
        if isinstance(self.cmd, CspIncident):
            # No shard counts an incident (it is the network schedule's): the DCC hubs in the
            # region on the networks it takes down, each tick it runs.
            techs = CSP_TECHS[Csp(self.cmd.region)] + ((WanTech.G4,) if self.cmd.include_4g else ())
            out["hubs_cut_off"] = (self.counters.get("hubs_cut_off", 0) if self.done
                                   else int(s.hubs_by_wan[self.cmd.region, list(techs)].sum()))
        return out

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if tick >= self.end_tick() and not self.done:
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        return []


class FieldProgrammeShard(ShardOp):
    """Hubs visited in priority order within a daily capacity: 4G swaps or VWAN onboarding."""

    cmd: SwapProgramme | VwanFallback
    done_key: str  # the counter of hubs done (each programme names its own)

    def _candidates(self, hs: HubState, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows the programme may visit among `base` and their priority class (0 first)."""
        raise NotImplementedError

    def _eligible(self, hs: HubState, up_area: np.ndarray | None) -> np.ndarray:
        """Which of self.rows still need a visit now."""
        raise NotImplementedError

    def _apply(self, hs: HubState, rows: np.ndarray, s: TickSummary) -> None:
        """Visit `rows` (a swap, an onboarding) and count its messages."""
        raise NotImplementedError

    def start(self, hs, ctx, tick, s) -> None:
        n = hs.n_hubs
        c = hs.cols
        in_region = AREA_CSP[c["area"][:n]] == self.cmd.region
        dcc = on_dcc(c["smets"][:n])
        rows, klass = self._candidates(hs, in_region & dcc)
        order = sort_by_block(hs, rows, op_uniform(hs, self.seq, 0, rows), klass)
        self.rows, self.klass = rows[order], klass[order]
        self.done_mask = np.zeros(self.rows.size, bool)
        self.budget: dict[str, np.ndarray] | None = None
        self.per_install = ctx.config.params.events.messages_per_install
        self._up = None

    def control(self, action, data, hs, ctx, tick, s) -> None:
        if action == "budget":
            self.budget = data
        else:
            super().control(action, data, hs, ctx, tick, s)

    def step(self, hs, ctx, tick, s, up_area) -> None:
        self._up = up_area
        if self.state != OperationState.RUNNING or self.budget is None:
            self.budget = None
            return
        eligible = self._eligible(hs, up_area)
        take = np.zeros(self.rows.size, bool)
        for k in range(2):
            take |= take_by_block(hs, self.rows, eligible & (self.klass == k) & ~take, self.budget["blocks"],
                                  self.budget["budget"][:, k])
        rows = self.rows[take]
        self._apply(hs, rows, s)
        self.done_mask[take] = True
        self.budget = None

    def report(self, hs, tick) -> dict[str, Any]:
        # Demand per block is needed only on the ticks the fleet sets the next day's budget;
        # the rest of the time the counts from that tick stand.
        if (tick - self.cmd.at) % HALF_HOURS_PER_DAY == 0 or not hasattr(self, "_counts"):
            eligible = self._eligible(hs, self._up)
            blocks, demand = block_demand(hs, self.rows, eligible, self.klass.astype(np.intp), 2)
            self._counts = {"eligible": int(eligible.sum()),
                            "eligible_priority": int((eligible & (self.klass == 0)).sum())}
            return {self.done_key: int(self.done_mask.sum()), **self._counts, "blocks": blocks,
                    "block_demand": demand}
        return {self.done_key: int(self.done_mask.sum()), **self._counts}


class SwapShard(FieldProgrammeShard):
    cmd: SwapProgramme
    done_key = "swapped"

    def _candidates(self, hs, base):
        c = hs.cols
        n = hs.n_hubs
        wan = c["wan"][:n]
        cellular = base & ((wan == WanTech.G2) | (wan == WanTech.G3))
        rows = np.flatnonzero(cellular)
        klass = np.where(c["wan"][rows] == self.cmd.prioritise, 0, 1).astype(np.int8) if self.cmd.prioritise \
            else np.zeros(rows.size, np.int8)
        return rows, klass

    def _eligible(self, hs, up_area) -> np.ndarray:
        wan = hs.cols["wan"][self.rows]
        return ~self.done_mask & ((wan == WanTech.G2) | (wan == WanTech.G3))

    def _apply(self, hs, rows, s) -> None:
        # A new hub comes with the newest catalogue image: the highest version under its scheme.
        m = models_of(DeviceType.CH)[_TOSHIBA_4G - 1]
        latest = max(range(len(m.versions)), key=lambda i: m.scheme.sort_key(m.versions[i]))
        hs.change(rows, wan=WanTech.G4, variant=Variant.FOUR_G, ch_model=_TOSHIBA_4G, ch_fw=latest)
        count_rows(s, MessageType.CONFIGURATION, hs, rows, self.per_install)


class VwanShard(FieldProgrammeShard):
    cmd: VwanFallback
    done_key = "onboarded"

    def _candidates(self, hs, base):
        c = hs.cols
        n = hs.n_hubs
        wan = c["wan"][:n]
        eligible = base & ((c["flags"][:n] & Flag.VWAN_ELIGIBLE) != 0) & (wan != WanTech.VWAN)
        rows = np.flatnonzero(eligible)
        # Premises with no WAN at all first, then those the switch-offs left behind.
        klass = np.where(c["wan"][rows] == WanTech.NONE, 0, 1).astype(np.int8)
        return rows, klass

    def _eligible(self, hs, up_area) -> np.ndarray:
        c = hs.cols
        wan = c["wan"][self.rows]
        net_down = np.zeros(self.rows.size, bool) if up_area is None else ~up_area[c["area"][self.rows], wan]
        gone = (wan == WanTech.NONE) | net_down
        return ~self.done_mask & gone & (wan != WanTech.VWAN)

    def _apply(self, hs, rows, s) -> None:
        hs.change(rows, wan=WanTech.VWAN, fault_clear=Fault.NO_COVERAGE)
        count_rows(s, MessageType.CONFIGURATION, hs, rows, 2)


class FieldProgrammeFleet(FleetOp):
    """Each day: the capacity across blocks, the priority class first."""

    cmd: SwapProgramme | VwanFallback

    def capacity(self) -> int:
        return self.cmd.installs_per_day if isinstance(self.cmd, SwapProgramme) else self.cmd.onboard_per_day

    def progress(self, counters: dict[str, int] | None = None) -> FieldProgrammeProgress:
        c = self.counters if counters is None else counters
        done = c.get("swapped" if isinstance(self.cmd, SwapProgramme) else "onboarded", 0)
        return FieldProgrammeProgress(done=done, eligible=c.get("eligible", 0),
                                      eligible_priority=c.get("eligible_priority", 0))

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if rep is None or self.done:
            return []
        if tick >= self.cmd.at + days_to_ticks(self.cmd.days):
            self.state = OperationState.DONE
            return [Control(self.name, "finish")]
        if self.state == OperationState.RUNNING and (tick - self.cmd.at) % HALF_HOURS_PER_DAY == 0 and rep["eligible"]:
            demand = rep["block_demand"]
            cap = self.capacity()
            first = min(cap, int(demand[:, 0].sum()))
            budget = issue_budget(rep["blocks"], demand, np.array([first, cap - first]))
            return [Control(self.name, "budget", budget)]
        return []
