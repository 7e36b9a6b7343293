"""How operations run: a shard half (`ShardOps`, per-hub effects) and a fleet half (`FleetPlanner`,
decisions from merged tick summaries), talking through controls that take effect LAG ticks later.

Every fleet-level decision (advance a rollout wave, halt it, how many devices each block may start)
is computed from the merged summary of tick t and delivered with step(t + LAG). The engine keeps at
most LAG ticks in flight, so the decision is always made in time, and it depends only on summaries,
never on timing or on how the fleet is split: the run stays a function of seed and journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.model.catalog import VersionTable
from twin.model.config import FleetConfig
from twin.model.network import NetworkPlan
from twin.model.ops.commands import Command, OperationControl
from twin.model.ops.progress import OperationAction, OperationState, Progress
from twin.model.state import HubState
from twin.model.summary import TickSummary

LAG = 4  # ticks from a fleet-level decision to its effect (two hours)


@dataclass
class Control:
    """An instruction for the shards at one tick: start an operation, a budget, a state change."""

    op: str
    action: str
    data: dict[str, Any] = field(default_factory=dict)


class ShardOp:
    """Per-shard half of an operation. Subclasses hold only rows of this shard's hubs."""

    def __init__(self, name: str, cmd: Command, seq: int):
        self.name = name
        self.cmd = cmd
        self.seq = seq  # keys this operation's random streams
        self.state = OperationState.RUNNING

    def start(self, hs: HubState, ctx: ShardOps, tick: int, s: TickSummary) -> None:
        """Materialise at the command's tick (find the hubs it touches)."""

    def control(self, action: str, data: dict[str, Any], hs: HubState, ctx: ShardOps, tick: int,
                s: TickSummary) -> None:
        if action in _SHARD_STATE:
            self.state = _SHARD_STATE[action]

    def step(self, hs: HubState, ctx: ShardOps, tick: int, s: TickSummary, up_area: np.ndarray) -> None:
        """Advance one tick (after controls, before the daily-read slot)."""

    def report(self, hs: HubState, tick: int) -> dict[str, Any]:
        """This tick's counters. A live operation reports every tick; one that reports nothing has
        nothing to do on this shard and is dropped (the planner relies on this, see observe)."""
        return {}

    def settled(self) -> bool:
        """Nothing left in flight (a halted operation may still be finishing transfers)."""
        return True

    def finished(self) -> bool:
        """Nothing left to do or report on this shard: the runtime drops the operation after this
        tick's report, so its final counters go out once. An operation that ends by itself (one
        hub's request applied, or a shard that holds none of its hubs) says so here; the others
        end with the fleet's finish, cancel or halt."""
        return self.state in (OperationState.DONE, OperationState.CANCELLED) or (
            self.state == OperationState.HALTED and self.settled())

    @property
    def active(self) -> bool:
        return OperationState(self.state).live


# The state a shard half takes on each control from the fleet half (halt and finish are the
# planner's own decisions; pause, resume and cancel a user's).
_SHARD_STATE = {"pause": OperationState.PAUSED, "resume": OperationState.RUNNING, "cancel": OperationState.CANCELLED,
                "halt": OperationState.HALTED, "finish": OperationState.DONE}
_USER_STATE = {OperationAction.PAUSE: OperationState.PAUSED, OperationAction.RESUME: OperationState.RUNNING,
               OperationAction.CANCEL: OperationState.CANCELLED}


class FleetOp:
    """Fleet half of an operation: metadata for users, decisions for the shards."""

    never_started = False  # cancelled before its start was sent to the shards
    _shown: tuple[Any, ...] | None = None  # signature() when the planner last reported it changed
    _record_context = ("config",)  # not in checkpoints: the planner's config is supplied again

    def __init__(self, name: str, cmd: Command, config: FleetConfig):
        self.name = name
        self.cmd = cmd
        self.config = config
        self.state = OperationState.PENDING
        self.reason = ""
        self.counters: dict[str, int] = {}
        self.history: list[tuple[int, dict[str, int]]] = []  # (tick, counters) of each report

    @property
    def done(self) -> bool:
        return OperationState(self.state).done

    def observe(self, tick: int, rep: dict[str, Any] | None, planner: FleetPlanner) -> list[Control]:
        """Read this tick's merged report; return controls for tick + LAG."""
        if rep is not None:
            self.counters = {k: int(v) for k, v in rep.items() if not k.startswith("block")}
            self.history.append((tick, dict(self.counters)))
        if self.state == OperationState.PENDING and tick >= self.cmd.at:
            self.state = OperationState.RUNNING
        return []

    def on_accept(self, planner: FleetPlanner) -> None:
        """Record fleet-level facts the command fixes in advance (versions, network schedule)."""
        self.schedule_network(planner.network)

    def on_start(self, planner: FleetPlanner) -> None:
        """Its start is being sent to the shards (in the order they will apply it)."""

    def schedule_network(self, plan: NetworkPlan) -> None:
        """Enter in `plan` what the command fixes in the network schedule (nothing by default)."""

    def on_control(self, action: str) -> list[Control]:
        """A user's pause / resume / cancel (or activate), already validated; returns controls."""
        act = OperationAction(action)
        self.state = _USER_STATE[act]
        if act == OperationAction.CANCEL:
            self.reason = "cancelled by an operator"
        return [Control(self.name, str(act))]

    def allowed_actions(self) -> set[OperationAction]:
        """The controls a user may send it now (none once it is done)."""
        if self.done:
            return set()
        if self.state in (OperationState.RUNNING, OperationState.PENDING):
            return {OperationAction.PAUSE, OperationAction.CANCEL}
        return {OperationAction.RESUME, OperationAction.CANCEL}

    def progress(self, counters: dict[str, int] | None = None) -> Progress:
        """This operation's typed progress (each kind its own record) from its merged counters,
        the newest or, given, those of an earlier tick (`history`)."""
        raise NotImplementedError(f"{type(self).__name__} does not say its progress")

    def signature(self) -> tuple[Any, ...]:
        """What a user sees change: state, reason and counters (compared tick to tick)."""
        return (str(self.state), self.reason, tuple(sorted(self.counters.items())))


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
        from twin.model.ops.registry import make_shard_op

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
        self.ops: dict[str, FleetOp] = {}  # every accepted operation, for the views
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
        from twin.model.ops.registry import make_fleet_op

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
        visited = list(self.live.values())
        for name, op in list(self.live.items()):
            rep = s.ops.get(name)
            if op.done and rep is None:
                if s.tick >= op.cmd.at:
                    # Started, and no shard reported it: every shard half has retired (a live one
                    # reports each tick), so nothing about it will come again.
                    del self.live[name]
                continue
            self.schedule(s.tick + LAG, op.observe(s.tick, rep, self))
        changed = []
        for op in visited:
            sig = op.signature()
            if sig != getattr(op, "_shown", None):
                op._shown = sig
                changed.append(op)
        return changed

