"""How operations run: a shard half (`ShardOps`, per-hub effects) and a fleet half (`FleetPlanner`,
decisions from merged tick summaries), talking through controls that take effect LAG ticks later.

Every fleet-level decision (advance a rollout wave, halt it, how many devices each block may start)
is computed from the merged summary of tick t and delivered with step(t + LAG). The engine keeps at
most LAG ticks in flight, so the decision is always made in time, and it depends only on summaries,
never on timing or on how the fleet is split: the run stays a function of seed and journal."""

from __future__ import annotations

from collections import deque

import numpy as np

from twin.model.capacity import NetworkQueues
from twin.model.catalog import Csp, VersionTable, WanTech
from twin.model.config import FleetConfig
from twin.model.network import NEVER, NetworkPlan
from twin.model.ops.base import LAG as LAG  # re-exported: the engine keeps LAG ticks in flight
from twin.model.ops.base import Control as Control  # re-exported for the engine and checkpoints
from twin.model.ops.base import FleetOp as FleetOp
from twin.model.ops.base import ShardOp
from twin.model.ops.commands import Command, OperationControl
from twin.model.ops.registry import make_fleet_op, make_shard_op
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.state import HubState
from twin.model.summary import TickSummary

# How long a finished operation stays readable (AIP-151 GetOperation, ListOperations) after it has
# ended on every shard, in simulated days; then it is retired and a read of it is NOT_FOUND. A run
# holds one operation per device-changing Service Request, so keeping them all would grow with the
# run's length, not with the work in flight. [U] a week, long enough for a DCC User's adapter to
# collect an outcome it was told to follow; None keeps every operation (a scenario's report).
OPERATION_RETENTION_DAYS = 7.0


def retention_ticks(days: float | None) -> int | None:
    """Ticks of a retention of `days` simulated days (None: for ever). ValueError if negative."""
    if days is None:
        return None
    if not days >= 0:
        raise ValueError(f"an operation retention must be zero or more days, got {days!r}")
    return round(days * HALF_HOURS_PER_DAY)


def operation_seq(name: str) -> int | None:
    """The number in an operation's name ("firmware-rollout-12" -> 12), None if it has none."""
    _, _, tail = name.rpartition("-")
    return int(tail) if tail.isascii() and tail.isdigit() else None


class ShardOps:
    """Everything operations keep inside one shard; stepped by the kernel each tick."""

    _record_context = ("config",)  # not in checkpoints: the shard's own config is supplied again

    def __init__(self, config: FleetConfig):
        self.config = config
        self.network = NetworkPlan()
        self.versions = VersionTable()
        self.failed_suppliers: set[int] = set()
        # Failed supplier -> its Supplier of Last Resort, to follow a chain of failures.
        self.solr_of: dict[int, int] = {}
        self.ops: dict[str, ShardOp] = {}

    def last_resort(self, supplier: int) -> int:
        """Where a failed supplier's customers go now: its SoLR, or, if that failed too, its
        SoLR's, and so on (a chain ends: a failure's SoLR is never a failed supplier)."""
        while supplier in self.solr_of:
            supplier = self.solr_of[supplier]
        return supplier

    def apply(self, hs: HubState, tick: int, controls: list[Control], s: TickSummary) -> None:
        for c in controls:
            if c.action == "start":
                op = make_shard_op(c.op, c.data["command"], c.data["seq"])
                self.ops[c.op] = op
                op.start(hs, self, tick, s)
            elif c.op in self.ops:
                self.ops[c.op].control(c.action, c.data, hs, self, tick, s)

    def step(self, hs: HubState, tick: int, s: TickSummary, up_area: np.ndarray) -> None:
        for op in self.ops.values():
            if op.active:
                op.step(hs, self, tick, s, up_area)

    def report(self, hs: HubState, tick: int, s: TickSummary) -> None:
        for name, op in list(self.ops.items()):
            rep = op.report(hs, tick)
            if rep:
                s.ops[name] = rep
            # After its final report an operation is dropped, not kept as a placeholder: what a
            # shard steps and reports each tick is the work in flight, never every operation it
            # has ever started (one per Service Request, on every shard). A late control for it
            # finds nothing and is ignored.
            if not rep or op.finished():
                del self.ops[name]


class FleetPlanner:
    """The fleet half of all operations: accepts commands, schedules and decides."""

    # Checkpoints (twin.model.ops.snapshot) keep the instance fields but these: the run's config
    # is supplied again when the planner is read back.
    _record_context = ("config",)

    def __init__(self, config: FleetConfig):
        self.config = config
        # The operations users can read: every one accepted but those finished more than
        # `retention` ticks ago (retired in observe), in acceptance order.
        self.ops: dict[str, FleetOp] = {}
        # The operations observe() still visits: all but the done ones whose shard halves have all
        # retired, so a tick costs what is in flight, not every operation ever accepted.
        self.live: dict[str, FleetOp] = {}
        self.seq = 0
        self.pending: dict[int, list[Control]] = {}  # tick -> controls
        # The last tick whose summary the planner has observed (-1: none). Where a command is
        # accepted relative to observations changes decisions, so the journal records it and a
        # replay accepts each command at the same point.
        self.observed = -1
        # Fleet-level copies of what the shards will hold, for queries (labels, network schedule).
        self.versions = VersionTable()
        self.network = NetworkPlan()
        # Supplier -> (tick it fails, its SoLR, the operation): every failure ever accepted, done
        # or not, so no later command sends customers to a supplier that has failed.
        self.failed_suppliers: dict[int, tuple[int, int, str]] = {}
        # The network's queues (twin.model.capacity): fleet-level, so exact for any shard layout.
        self.queues = NetworkQueues()
        # Retention of finished operations (ticks; None: kept for ever), and the finished ones in
        # the order they left `live`, with that tick: retiring costs what retires, never a scan.
        self.retention: int | None = retention_ticks(OPERATION_RETENTION_DAYS)
        self.retiring: deque[tuple[int, str]] = deque()
        # What retired operations fixed in the network schedule: rebuilding the schedule (a
        # cancel before start) needs it, and a retired operation can no longer change it.
        self.retired_network = NetworkPlan()
        self.retired = 0  # operations retired so far

    def schedule(self, tick: int, controls: list[Control]) -> None:
        if controls:
            self.pending.setdefault(tick, []).extend(controls)

    def accept(self, cmd: Command, *, seq: int | None = None) -> FleetOp | None:
        """Register an accepted (validated, journaled) command; returns its operation if any.

        `seq` names the operation and keys its random streams; a replay passes the journaled one,
        so a branch that leaves out an earlier command still gives the others the same streams."""
        if isinstance(cmd, OperationControl):
            op = self.ops[cmd.operation]
            if cmd.action == "cancel" and self._cancel_before_start(op):
                return op
            # Never before the operation starts: a shard ignores a control for an operation it
            # does not hold, so a cancel (or pause, or activate) of a pending operation would be
            # lost, the operation would start anyway and, cancelled, never end on the shards. In
            # the start tick the control follows the start (it was scheduled later).
            self.schedule(max(cmd.at, op.cmd.at), op.on_control(cmd.action))
            return op
        seq = self.seq + 1 if seq is None else seq
        self.seq = max(self.seq, seq)
        name = f"{cmd.kind.replace('_', '-')}-{seq}"
        op = make_fleet_op(name, cmd, self.config)
        op.on_accept(self)
        self.ops[name] = op
        self.live[name] = op
        self.schedule(cmd.at, [Control(name, "start", {"command": cmd, "seq": seq})])
        return op

    def _cancel_before_start(self, op: FleetOp) -> bool:
        """Cancel an operation whose start is still to be sent: it never starts, so nothing of it
        happens on the shards (no power cut and restoration, no switch-off), and what it fixed in
        the network schedule is taken out. False if it has started (the shards cancel it)."""
        waiting = self.pending.get(op.cmd.at, [])
        if not any(c.op == op.name and c.action == "start" for c in waiting):
            return False
        self.pending[op.cmd.at] = [c for c in waiting if c.op != op.name]
        op.on_control("cancel")
        op.reason = "cancelled before it started"
        op.never_started = True
        self.failed_suppliers = {k: v for k, v in self.failed_suppliers.items() if v[2] != op.name}
        self.network.clear()
        for region, wan, off, back in self.retired_network.to_array().tolist():
            self.network.switch_off(Csp(region), WanTech(wan), off, None if back == NEVER else back)
        for other in self.ops.values():
            if not other.never_started:
                other.schedule_network(self.network)
        return True

    def controls_for(self, tick: int) -> list[Control]:
        controls = self.pending.pop(tick, [])
        for c in controls:
            if c.action == "start" and c.op in self.ops:
                self.ops[c.op].on_start(self)
        return controls

    def observe(self, s: TickSummary) -> list[FleetOp]:
        """Read the merged summary of tick `s.tick`: each live operation decides (its controls go
        out LAG ticks later). Returns the operations whose state, reason or counters a user sees
        change at this tick (a control accepted since the last tick included), in acceptance
        order. What was last reported is kept on each operation (`_shown`), so a planner restored
        from a snapshot that lacks it reports each live operation once more."""
        self.observed = s.tick
        cap = self.config.params.capacity
        if cap.enabled:
            s.capacity = self.queues.step(s, cap, self.config.params.traffic)
        visited = list(self.live.values())
        for name, op in list(self.live.items()):
            rep = s.ops.get(name)
            if op.done and rep is None:
                if s.tick >= op.cmd.at:
                    # Started, and no shard reported it: every shard half has retired (a live one
                    # reports each tick), so nothing about it will come again.
                    del self.live[name]
                    if self.retention is not None:
                        self.retiring.append((s.tick, name))
                continue
            seen = op.watch(s)
            if seen:
                # A new dict: the summary's own reports stay as the shards made them.
                rep = {**(rep or {}), **seen}
            self.schedule(s.tick + LAG, op.observe(s.tick, rep, self))
        self._retire(s.tick)
        changed = []
        for op in visited:
            sig = op.signature()
            if sig != op._shown:
                op._shown = sig
                changed.append(op)
        return changed


    def _retire(self, tick: int) -> None:
        """Forget the operations that left `live` at least `retention` ticks before `tick`."""
        if self.retention is None:
            return
        while self.retiring and self.retiring[0][0] + self.retention <= tick:
            _, name = self.retiring.popleft()
            op = self.ops.pop(name, None)
            if op is not None:
                if not op.never_started:
                    op.schedule_network(self.retired_network)
                self.retired += 1

    def was_retired(self, name: str) -> bool:
        """Whether `name` ("kind-N") names no operation held now but one numbered as this run's
        operations were (N at most the last accepted): an operation finished and retired. The
        number alone is kept, not every retired name, so a name of the wrong kind with a used
        number also answers True."""
        seq = operation_seq(name)
        return name not in self.ops and seq is not None and 0 < seq <= self.seq and self.retired > 0
