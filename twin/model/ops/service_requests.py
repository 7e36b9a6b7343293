"""Device-changing Service Requests applied to one hub: top-up (2.2), tariff (1.1.1), supply
enable/disable (7.1/7.2) and comms hub status updates from the field (8.14.x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import Fault, Flag, MessageType, Status, WanTech
from twin.model.metering import kwh_between
from twin.model.ops.base import Control, FleetOp, ShardOp
from twin.model.ops.commands import ServiceRequestCommand
from twin.model.ops.common import days_to_ticks, reachable
from twin.model.ops.progress import OperationState, ServiceRequestProgress
from twin.model.prepayment import balance_pence, enable_supply, freeze_metering, restart_metering, touch
from twin.model.traffic import count_rows

# Comms hub status updates are sent by the installer on site: they need no WAN.
ON_SITE = {"8.14.1", "8.14.2", "8.14.3", "8.14.4"}


def credit_pence(c: dict[str, np.ndarray], row: int, config, tick: int) -> float:
    """Prepayment balance at the end of `tick` (`prepayment.balance_pence`)."""
    return float(balance_pence(c, row, config, tick))


class ServiceRequestShard(ShardOp):
    cmd: ServiceRequestCommand

    def start(self, hs, ctx, tick, s) -> None:
        self.mine = bool(hs.holds(np.array([self.cmd.hub]))[0])
        self.result: dict[str, int] = {"applied": 0, "failed": 0, "pending": int(self.mine)}
        self.deadline = tick + days_to_ticks(self.cmd.deadline_days)
        if not self.mine:
            # Only the shard holding the hub takes part: the others retire in this tick, reporting
            # nothing, so a request costs them nothing after its start.
            self.state = OperationState.DONE

    def step(self, hs, ctx, tick, s, up_area) -> None:
        if not self.mine or not self.result["pending"]:
            return
        row = hs.local(np.array([self.cmd.hub]))
        if self.cmd.srv in ON_SITE or reachable(hs, row, up_area)[0]:
            self.result.update(self._apply(hs, ctx, int(row[0]), tick), pending=0)
            kind = MessageType.CONFIGURATION if self.cmd.srv not in ("2.2",) else MessageType.PREPAYMENT
            count_rows(s, kind, hs, row)
        elif tick >= self.deadline:
            self.result.update(failed=1, pending=0)

    def _apply(self, hs, ctx, row: int, tick: int) -> dict[str, int]:
        c = hs.cols
        srv = self.cmd.srv
        rows = np.array([row])
        if srv == "2.2":
            if not c["flags"][row] & Flag.PREPAY:
                return {"failed": 1, "not_prepayment": 1}
            # Credit goes on at once; if it lifts a disabled supply's balance above the disablement
            # threshold, this tick's prepayment pass arms the supply (0x8F32).
            c["credit_p"][row] += int(self.cmd.param("amount_pence", 0))
            touch(hs, rows)
        elif srv == "1.1.1":
            new = round(float(self.cmd.param("unit_rate_pence", 0)) * 10)
            # Fold the spend so far at the old rate into the stored credit, so a balance stays exact
            # (not while supply is off: the stored credit is then the balance itself).
            if not c["status"][row] & Status.METERING_STOPPED:
                doy = ctx.config.start.timetuple().tm_yday - 1
                used = float(kwh_between(int(c["elec_kwh_year"][row]), "elec", doy, ctx.config.start_tick_of_day,
                                         tick + 1))
                c["credit_p"][row] += round((new - int(c["tariff_dp"][row])) / 10 * used)
            c["tariff_dp"][row] = new
            touch(hs, rows)
        elif srv == "7.1":
            status = int(c["status"][row])
            if status & Status.CREDIT_OFF and not status & Status.ARMED:
                # The meter keeps a supply disabled for credit off until credit is restored.
                return {"failed": 1, "credit_below_disablement": 1}
            c["status"][row] = status & ~Status.SUPPLY_OFF & 0xFF
            if status & Status.ARMED:
                enable_supply(hs, rows, ctx.config, tick)
            elif status & Status.SUPPLY_OFF:
                restart_metering(c, rows, ctx.config, tick)
                touch(hs, rows)
        elif srv == "7.2":
            # Nothing is metered while supply is off (a prepayment balance stands still too).
            if not c["status"][row] & Status.METERING_STOPPED:
                freeze_metering(c, rows, ctx.config, tick)
            c["status"][row] |= np.uint8(Status.SUPPLY_OFF)
            touch(hs, rows)
        elif srv in ("8.14.1", "8.14.4"):
            hs.change(rows, fault_clear=Fault.HARDWARE)
        elif srv == "8.14.2":
            hs.change(rows, wan=WanTech.NONE, fault_set=Fault.NO_COVERAGE)
        elif srv == "8.14.3":
            hs.change(rows, fault_set=Fault.HARDWARE)
        out = {"applied": 1}
        if c["flags"][row] & Flag.PREPAY:
            out["credit_pence"] = round(credit_pence(c, row, ctx.config, tick))
        out["tariff_dp"] = int(c["tariff_dp"][row])
        return out

    def report(self, hs, tick) -> dict[str, Any]:
        return dict(self.result) if self.mine else {}

    def finished(self) -> bool:
        # Applied or failed: this tick's report carries the final result, then the request is
        # dropped without waiting LAG ticks for the fleet's finish.
        return not self.result["pending"] or super().finished()


class ServiceRequestFleet(FleetOp):
    """Ends with the one report that carries the result; the shard half has retired by then, so
    no finish control is sent."""

    def observe(self, tick, rep, planner) -> list[Control]:
        super().observe(tick, rep, planner)
        if rep is not None and not self.done and rep.get("applied", 0) + rep.get("failed", 0) >= 1:
            self.state = OperationState.DONE if rep.get("applied") else OperationState.FAILED
            if rep.get("not_prepayment"):
                self.reason = "the premises is not on prepayment"
            elif rep.get("credit_below_disablement"):
                self.reason = "supply is disabled for credit below the disablement threshold; top up first"
            elif rep.get("failed"):
                self.reason = "the hub was not reachable before the deadline"
        return []

    def progress(self, counters: dict[str, int] | None = None) -> ServiceRequestProgress:
        c = self.counters if counters is None else counters
        refusal = next((k for k in ("not_prepayment", "credit_below_disablement") if c.get(k)), "")
        return ServiceRequestProgress(applied=c.get("applied", 0), failed=c.get("failed", 0),
                                      pending=c.get("pending", 0), credit_pence=c.get("credit_pence"),
                                      tariff_dp=c.get("tariff_dp"), refusal=refusal)
