"""The operations store: operator events validated, journaled and accepted (the fleet planner holds
every operation and the controls it sends to the shards), and operations as users see them: the
shape of a google.longrunning.Operation (AIP-151), with the typed state, allowed controls and
per-kind progress of the model (`twin.model.ops.progress`), listed with a typed filter."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

from twin.engine.checkpoint import planner_snapshot
from twin.engine.errors import RunStateError
from twin.engine.journal import NOTHING_APPLIED, Journal, Position, ReplayQueue, position
from twin.engine.latency import LatencyTable
from twin.engine.requests import RequestKey, RequestLedger
from twin.model.catalog import VersionTable
from twin.model.config import FleetConfig, TwinInputError
from twin.model.network import NetworkPlan
from twin.model.ops.commands import Command, FirmwareRollout, OperationControl, command_from_dict, parse_command
from twin.model.ops.progress import OperationAction, OperationState, Progress
from twin.model.ops.runtime import OPERATION_RETENTION_DAYS, FleetOp, FleetPlanner, operation_seq, retention_ticks
from twin.model.ops.snapshot import planner_from_bytes
from twin.model.ops.validation import validate
from twin.model.summary import TickSummary

# google.rpc.Code values used for operations that end without success.
CANCELLED = 1
ABORTED = 10

Census = Callable[[Command], dict[str, int]]  # {version: devices} a rollout's selector matches now
Controls = dict[int, list[Any]]  # tick -> the controls sent with it


def operation_view(op: FleetOp, config: FleetConfig) -> dict[str, Any]:
    """One operation as a dict: name ("operations/{id}"), done, metadata (kind, state as an
    `OperationState`, reason, start_tick, start_time ISO 8601, command as accepted, progress as the
    kind's frozen `Progress` record, percent_done 0..100, allowed_actions as `OperationAction`s
    in their declared order), and error {code, message} (google.rpc codes) or response {note}."""
    state = OperationState(op.state)
    progress = op.progress()
    allowed = op.allowed_actions()
    view: dict[str, Any] = {
        "name": f"operations/{op.name}",
        "done": op.done,
        "metadata": {
            "kind": op.cmd.kind,
            "state": state,
            "reason": op.reason,
            "start_tick": op.cmd.at,
            "start_time": config.time_of(op.cmd.at).isoformat(),
            "command": op.cmd.to_dict(),
            "progress": progress,
            "percent_done": 100.0 * progress.fraction(state),
            "allowed_actions": [a for a in OperationAction if a in allowed],
        },
    }
    if state == OperationState.CANCELLED:
        view["error"] = {"code": CANCELLED, "message": op.reason or "cancelled"}
    elif state in (OperationState.HALTED, OperationState.FAILED):
        view["error"] = {"code": ABORTED, "message": op.reason}
    elif state == OperationState.DONE:
        view["response"] = {"note": op.reason}
    return view


# Operations left out of the per-tick changes (WatchFleet): one per device-changing Service
# Request, so a busy DCC would fill every tick with them; their callers follow them one by one.
UNSTREAMED_KINDS = frozenset({"service_request"})


def changed_views(ops: Iterable[FleetOp], config: FleetConfig) -> list[dict[str, Any]]:
    """Views of the operations a tick changed (`FleetPlanner.observe`'s result), operator events
    only: what a tick summary carries so a watcher never polls for operations."""
    return [operation_view(op, config) for op in ops if op.cmd.kind not in UNSTREAMED_KINDS]


class OperationField(StrEnum):
    """What a ListOperations filter (AIP-160) may test."""

    DONE = "done"
    KIND = "kind"
    STATE = "state"


@dataclass(frozen=True)
class OperationTerm:
    """`field = value`, or `field != value` with `negate`. Values are lower-case: "true"/"false"
    for done, a command kind ("firmware_rollout"), a state ("running")."""

    field: OperationField
    value: str
    negate: bool = False

    def matches(self, op: FleetOp) -> bool:
        return self.matches_facts(done=op.done, kind=op.cmd.kind, state=OperationState(op.state))

    def matches_facts(self, *, done: bool, kind: str, state: OperationState) -> bool:
        """The term over an operation's facts, whatever holds it (the planner, or the API's
        branch operations)."""
        if self.field is OperationField.DONE:
            got = str(done).lower()
        elif self.field is OperationField.KIND:
            got = kind
        else:
            got = state.value.lower()
        return (got == self.value) != self.negate


@dataclass(frozen=True)
class OperationFilter:
    """Which operations a page holds: every term, and the held image if given (AND).

    `held_image_for`: a firmware rollout to exactly this one hub (dense id) that distributes only,
    holding activation for an SR 11.3 (what an SR 11.1 creates)."""

    terms: tuple[OperationTerm, ...] = ()
    held_image_for: int | None = None

    def matches_facts(self, *, done: bool, kind: str, state: OperationState) -> bool:
        """The filter over an operation that is not the planner's (a branch's): its terms; never
        a held image."""
        return self.held_image_for is None and all(
            t.matches_facts(done=done, kind=kind, state=state) for t in self.terms)

    def matches(self, op: FleetOp) -> bool:
        if not all(t.matches(op) for t in self.terms):
            return False
        if self.held_image_for is not None:
            cmd = op.cmd
            return (isinstance(cmd, FirmwareRollout) and cmd.hold_activation
                    and tuple(cmd.hubs) == (self.held_image_for,))
        return True


class OperationRetired(TwinInputError):
    """A read of an operation that finished and was retired after the run's retention (the API
    answers NOT_FOUND with this message)."""


class OperationsStore:
    """Every operation of the run: accepted through `submit` (validated, journaled durably, then
    given to the planner), replayed from the journal on resume and rewind, read as views.

    A finished operation stays readable for `retention_days` of simulated time after it ended on
    every shard (None: for ever), then is retired: reading it is NOT_FOUND, saying so.

    `lock` (the run's plan lock) guards the planner, `next_submit`, `last_applied` and the replay
    queue: the step pipeline takes it to plan a tick and to observe a tick's summary, submit to
    validate and accept (a rollout's census asks the shards under it), readers to build views.
    Views are built under it, so none sees an operation half changed by a tick."""

    def __init__(self, config: FleetConfig, *, journal: Journal, census: Census,
                 refuses_commands: Callable[[], str | None],
                 retention_days: float | None = OPERATION_RETENTION_DAYS) -> None:
        self.config = config
        self.retention_days = retention_days
        self._retention = retention_ticks(retention_days)
        self.journal = journal
        # Request ids of the API requests that made journaled commands (retries get the first
        # answer, across restarts too); reads and the like are added by the services.
        self.requests = RequestLedger()
        self.requests.load(journal.records())
        self.planner = self._new_planner()
        self.lock = threading.Lock()
        # Journal records not yet accepted (after a resume or rewind, or a branch's inherited
        # future), and the position of the newest one the planner has accepted.
        self.replay = ReplayQueue()
        self.last_applied: Position = NOTHING_APPLIED
        self.next_submit = 0  # next tick not yet sent to the shards
        self._census = census
        self._refuses_commands = refuses_commands  # why no command may be accepted now, or None
        # Service Request response times as the planner's queues say after the last observed tick
        # (None: the run's capacity model is off). Replaced whole under the lock, read without it.
        self.latency: LatencyTable | None = self._latency_locked()

    # -- accepting -----------------------------------------------------------------------------
    def submit(self, event: dict[str, Any], *, relative_to: int | None = None,
               request: RequestKey | None = None) -> dict[str, Any]:
        """Validate an operator event, journal it durably, then acknowledge it as an Operation.

        Times are ticks, ISO times or offsets ('2h', '1d') from `relative_to` (default: now).
        Invalid events raise TwinInputError naming the field; nothing is journaled or changed.
        `request` (claimed in `self.requests` by the caller) is journaled with the command and
        marked done with its operation, so a retry of it gets that operation."""
        with self.lock:
            cmd = parse_command(event, self.config, now_tick=self.next_submit, relative_to=relative_to)
            return self._accept(cmd, request=request)

    def submit_command(self, cmd: Command) -> dict[str, Any]:
        """Accept an already-parsed command (a scenario's), checking it is not in the past."""
        with self.lock:
            if cmd.at < self.next_submit:
                raise TwinInputError("at", f"tick {cmd.at} is in the past (the fleet is at tick {self.next_submit})")
            return self._accept(cmd)

    def _accept(self, cmd: Command, *, request: RequestKey | None = None) -> dict[str, Any]:
        refused = self._refuses_commands()
        if refused is not None:
            raise RunStateError(refused)
        validate(cmd, self.planner, census=self._census)
        # A new operation never takes a number a journaled, not yet accepted command will use.
        op_seq = None if isinstance(cmd, OperationControl) else max(self.planner.seq, self.journal.max_op_seq) + 1
        # The operation's name as the planner gives it (FleetPlanner.accept), journaled with the request.
        op_name = cmd.operation if isinstance(cmd, OperationControl) else f"{cmd.kind.replace('_', '-')}-{op_seq}"
        seq = self.journal.append(cmd, after_tick=self.planner.observed, op_seq=op_seq,
                                  request=request.journal_entry(op_name) if request is not None else None)
        op = self.planner.accept(cmd, seq=op_seq)
        self.last_applied = (self.planner.observed, seq)
        if request is not None:
            self.requests.finish(request.user, request.request_id, operation=op_name)
        return operation_view(op, self.config) if op is not None else {}

    def _apply(self, rec: dict[str, Any]) -> None:
        """Under the lock: accept a journaled command (validated when it was first accepted)."""
        self.planner.accept(command_from_dict(rec["command"]), seq=rec.get("op_seq"))
        self.last_applied = position(rec)

    # -- the step pipeline's side ----------------------------------------------------------------
    def blocks(self, tick: int) -> bool:
        """A journaled command for `tick` waits for the summary of the tick it was accepted after."""
        return self.replay.blocks(tick)

    def controls_for(self, tick: int) -> list[Any]:
        """The controls to send with `tick` (which is then the last tick sent)."""
        with self.lock:
            controls = self.planner.controls_for(tick)
            self.next_submit = tick + 1
        return controls

    def observe(self, summary: TickSummary) -> None:
        """The planner sees a finished tick; journaled commands due after it are accepted."""
        with self.lock:
            # The operations this tick changed ride on its summary (WatchFleet carries them).
            summary.operations = changed_views(self.planner.observe(summary), self.config)
            self.latency = self._latency_locked()
            for rec in self.replay.due(self.planner.observed):
                self._apply(rec)

    def _new_planner(self) -> FleetPlanner:
        planner = FleetPlanner(self.config)
        planner.retention = self._retention
        return planner

    def _latency_locked(self) -> LatencyTable | None:
        cap = self.config.params.capacity
        return LatencyTable.of(self.planner.queues, cap, self.planner.observed) if cap.enabled else None

    def snapshot(self, later_controls: Controls) -> bytes:
        """The fleet half of the run now: the planner, the controls already sent for later ticks,
        and how much of the journal it has accepted."""
        with self.lock:
            return planner_snapshot(self.planner, self.last_applied, later_controls)

    def load_locked(self, checkpoint: int, snapshot: bytes | None) -> Controls:
        """Under the lock: the planner as `snapshot` left it (None: the start of the run), at the
        end of tick `checkpoint`, with every journaled command it had not accepted queued again and
        those due already accepted. Returns the controls the snapshot had sent for later ticks."""
        if snapshot is not None:
            planner, applied, controls = planner_from_bytes(snapshot, self.config)
            planner.retention = self._retention  # this run's setting, not the one it was written with
        else:
            planner, applied, controls = self._new_planner(), NOTHING_APPLIED, {}
        self.planner = planner
        for t, cs in controls.items():
            self.planner.pending[t] = list(cs) + self.planner.pending.get(t, [])
        self.last_applied = applied
        self.replay.load(self.journal.records(), applied=applied)
        for rec in self.replay.due(self.planner.observed):
            self._apply(rec)
        self.latency = self._latency_locked()
        self.next_submit = checkpoint + 1
        return {t: list(cs) for t, cs in controls.items()}

    # -- reading -------------------------------------------------------------------------------
    def operations(self) -> list[dict[str, Any]]:
        with self.lock:
            return [operation_view(op, self.config) for op in self.planner.ops.values()]

    def operations_page(self, where: OperationFilter | None, start: int, limit: int
                        ) -> tuple[list[dict[str, Any]], int]:
        """Views of up to `limit` operations `where` matches (all if None), from the operation
        numbered `start` on (its number is the N of "kind-N", increasing in acceptance order); and
        the number of the next one it matches (0 at the end). Numbers never change, so an
        operation that changes state between pages (and now passes or fails the filter), or one
        retired meanwhile, moves no other from one page to another. Only the page's views are
        built, and a filter on done=false looks only at the operations not yet finished."""
        with self.lock:
            held = self.planner.ops
            if where is not None and any(t.field is OperationField.DONE and (t.value == "false") != t.negate
                                         for t in where.terms):
                held = self.planner.live  # every operation not done is live
            page: list[FleetOp] = []
            nxt = 0
            for name, op in held.items():
                seq = operation_seq(name) or 0
                if seq < start or not (where is None or where.matches(op)):
                    continue
                if len(page) == limit:
                    nxt = seq
                    break
                page.append(op)
            return [operation_view(op, self.config) for op in page], nxt

    def operation(self, name: str) -> dict[str, Any]:
        """The view of operation `name` ("operations/ID" or "ID"); OperationRetired if it
        finished and was retired, TwinInputError if there is none."""
        key = name.removeprefix("operations/")
        with self.lock:
            op = self.planner.ops.get(key)
            if op is None:
                self._not_held(name, key)
            return operation_view(op, self.config)

    def _not_held(self, name: str, key: str) -> NoReturn:
        if self.planner.was_retired(key):
            raise OperationRetired("name", f"operation {name!r} is not held: finished operations are kept for "
                                           f"{self.retention_days:g} days of simulated time after they end, then "
                                           "retired")
        raise TwinInputError("name", f"no operation named {name!r}")

    def operation_history(self, name: str) -> list[tuple[int, Progress]]:
        """(tick, typed progress) of each tick operation `name` reported a change (a step
        series, thinned evenly past MAX_HISTORY points), oldest first; KeyError if there is none."""
        with self.lock:
            op = self.planner.ops[name.removeprefix("operations/")]
            return [(tick, op.progress(counters)) for tick, counters in op.history]

    def held_operations(self) -> int:
        """How many operations the planner holds now (retired ones not counted)."""
        with self.lock:
            return len(self.planner.ops)

    def firmware_versions(self) -> VersionTable:
        """Every firmware version per device model, the catalog's and those rollouts added: a
        copy taken under the lock."""
        with self.lock:
            return self.planner.versions.copy()

    def network_view(self) -> NetworkPlan:
        """The network schedule (every off window) as of now: a copy taken under the lock, which
        ticks and commands never change (the planner's own changes as commands are accepted)."""
        with self.lock:
            return NetworkPlan.from_array(self.planner.network.to_array())
