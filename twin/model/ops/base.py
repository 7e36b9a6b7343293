"""What every operation is: a shard half (`ShardOp`, per-hub effects in one shard) and a fleet half
(`FleetOp`, decisions from merged tick summaries), and the `Control` that carries a decision to the
shards LAG ticks later. The operation kinds (twin.model.ops.rollout, switching, ...) subclass these;
twin.model.ops.runtime runs them (ShardOps, FleetPlanner) and twin.model.ops.registry names them.
What an operation sees of the runtime is typed here as protocols (`ShardContext`, `PlannerContext`),
so neither the kinds nor this module import the runtime or the registry, not even for a type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from twin.model.catalog import VersionTable
from twin.model.config import FleetConfig
from twin.model.network import NetworkPlan
from twin.model.ops.commands import Command
from twin.model.ops.progress import OperationAction, OperationState, Progress
from twin.model.state import HubState
from twin.model.summary import TickSummary

LAG = 4  # ticks from a fleet-level decision to its effect (two hours)
# Reports an operation keeps for its progress series: past this the series keeps every other one
# (evenly spaced, the newest always), so a rollout running for years holds a bounded series.
MAX_HISTORY = 2048


class ShardContext(Protocol):
    """What a shard half sees of its shard's runtime (twin.model.ops.runtime.ShardOps): the shard's
    config, its copies of the network schedule and the firmware labels, and the supplier failures."""

    config: FleetConfig
    network: NetworkPlan
    versions: VersionTable
    failed_suppliers: set[int]
    solr_of: dict[int, int]

    def last_resort(self, supplier: int) -> int: ...


class PlannerContext(Protocol):
    """What a fleet half sees of the planner (twin.model.ops.runtime.FleetPlanner): every accepted
    operation, the live ones, and the fleet-level network schedule, labels and supplier failures."""

    ops: dict[str, FleetOp]
    live: dict[str, FleetOp]
    network: NetworkPlan
    versions: VersionTable
    failed_suppliers: dict[int, tuple[int, int, str]]


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

    def start(self, hs: HubState, ctx: ShardContext, tick: int, s: TickSummary) -> None:
        """Materialise at the command's tick (find the hubs it touches)."""

    def control(self, action: str, data: dict[str, Any], hs: HubState, ctx: ShardContext, tick: int,
                s: TickSummary) -> None:
        if action in _SHARD_STATE:
            self.state = _SHARD_STATE[action]

    def step(self, hs: HubState, ctx: ShardContext, tick: int, s: TickSummary, up_area: np.ndarray) -> None:
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
    history_stride = 1  # ticks between the reports `history` keeps (doubled as it fills)
    _shown: tuple[Any, ...] | None = None  # signature() when the planner last reported it changed
    _record_context = ("config",)  # not in checkpoints: the planner's config is supplied again

    def __init__(self, name: str, cmd: Command, config: FleetConfig):
        self.name = name
        self.cmd = cmd
        self.config = config
        self.state = OperationState.PENDING
        self.reason = ""
        self.counters: dict[str, int] = {}
        self.history: list[tuple[int, dict[str, int]]] = []  # (tick, counters) of the reports kept

    @property
    def done(self) -> bool:
        return OperationState(self.state).done

    def observe(self, tick: int, rep: dict[str, Any] | None, planner: PlannerContext) -> list[Control]:
        """Read this tick's merged report; return controls for tick + LAG."""
        if rep is not None:
            self.counters = {k: int(v) for k, v in rep.items() if not k.startswith("block")}
            self._keep_report(tick)
        if self.state == OperationState.PENDING and tick >= self.cmd.at:
            self.state = OperationState.RUNNING
        return []

    def _keep_report(self, tick: int) -> None:
        """Add this tick's counters to `history` if they changed (the series is a step function:
        an SR 11.1 waiting weeks for a dark hub reports the same counters every tick): the
        changes every `history_stride` ticks from the start, and the newest change; past
        MAX_HISTORY the stride doubles and half are let go."""
        h, at = self.history, self.cmd.at
        if h and h[-1][1] == self.counters:
            return
        if h and (h[-1][0] - at) % self.history_stride:
            h.pop()  # kept only while it was the newest
        h.append((tick, dict(self.counters)))
        if len(h) > MAX_HISTORY:
            self.history_stride *= 2
            self.history = [e for e in h[:-1] if (e[0] - at) % self.history_stride == 0] + h[-1:]

    def watch(self, s: TickSummary) -> dict[str, int]:
        """Figures of this operation the planner reads from the merged summary of tick `s.tick`,
        none by default: what no shard counts for it (the hubs on a network a switch-off turns
        off) or only the fleet knows (the ticks a timed operation has run). They join the shards'
        counters before `observe`, so `counters`, `history` and `progress` carry them like the
        others. Observations only: no decision of any operation reads them."""
        return {}

    def on_accept(self, planner: PlannerContext) -> None:
        """Record fleet-level facts the command fixes in advance (versions, network schedule)."""
        self.schedule_network(planner.network)

    def on_start(self, planner: PlannerContext) -> None:
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


class ShardOperations(ShardContext, Protocol):
    """What the tick kernel steps (twin.model.ops.runtime.ShardOps): apply the tick's controls, step
    every active operation, report each one's counters into the summary."""

    def apply(self, hs: HubState, tick: int, controls: list[Control], s: TickSummary) -> None: ...

    def step(self, hs: HubState, tick: int, s: TickSummary, up_area: np.ndarray) -> None: ...

    def report(self, hs: HubState, tick: int, s: TickSummary) -> None: ...
