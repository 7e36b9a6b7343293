"""FleetService (operators): clock, operator events as Operations, aggregates, hubs, tick stream;
and the standard google.longrunning.Operations service over the same operations."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from datetime import timedelta
from typing import Any

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2, json_format

from twin.engine.interface import FleetEngine
from twin.engine.operations import OperationField, OperationFilter, OperationRetired, OperationTerm
from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from twin.model.catalog import AlertKind
from twin.model.config import TwinInputError
from twin.model.ops.progress import OperationAction, OperationState
from twin.model.query import parse_filter
from twin.services.batching import ShardBatcher
from twin.services.branching import Branches, ComparisonWriter
from twin.services.catalog import fleet_catalog
from twin.services.convert import (
    ALERT_CODES,
    cluster_message,
    hub_index,
    hub_message,
    operation_message,
    summary_message,
    ts,
)
from twin.services.errors import ApiError, conflict, invalid, not_found
from twin.services.operation_store import OperationStore
from twin.services.pagination import next_page_token, page_of, slice_page
from twin.services.retries import claim_request
from twin.services.streams import RUN_REWOUND, StreamEnd, StreamLimits, behind, expired
from twin.services.subscribers import Subscriber, Subscribers
from twin.util.grammar import shown

MAX_PAGE = 1000
# Operation states in which pause, resume or cancel has nothing left to do (answered unchanged).
_ALREADY = {OperationAction.PAUSE: {OperationState.PAUSED},
            OperationAction.RESUME: {OperationState.RUNNING, OperationState.PENDING},
            OperationAction.CANCEL: {OperationState.CANCELLED}}
_PAST = {OperationAction.PAUSE: "paused", OperationAction.RESUME: "resumed", OperationAction.CANCEL: "cancelled"}
MAX_EVENTS_PAGE = 500
MAX_BACKLOG = 2000
RECORDED_KEPT = 48 * 56  # ticks whose arrival time is kept: twice the supervisor's default history
WATCH_RECHECK_S = 1.0  # an idle WatchFleet stream looks at the run this often (a rewind may record no tick)
CLUSTER_WAIT_S = 1.0  # GetCluster waits this long for the shards; one that has not answered shows where it last did


def _event_dict(req: fleet_pb2.CreateEventRequest) -> dict[str, Any]:
    which = req.WhichOneof("event")
    if which is None:
        raise invalid("event", "set one event (firmware_rollout, power_outage, ...)")
    msg = getattr(req, which)
    body = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    # Proto3 JSON writes 64-bit integers as strings; the commands take numbers.
    for f in msg.DESCRIPTOR.fields:
        if f.name in body and f.type in (f.TYPE_INT64, f.TYPE_UINT64, f.TYPE_SINT64):
            body[f.name] = int(body[f.name])
    body["type"] = which
    if req.at:
        body["at"] = req.at
    if which == "supplier_switch" and body.get("hub", "").startswith("hubs/"):
        body["hub"] = body["hub"][5:]
    return body


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(self, supervisor: FleetEngine, server, *, limits: StreamLimits | None = None,
                 write_comparison: ComparisonWriter | None = None):
        self.sup = supervisor
        self.server = server
        self.limits = limits or StreamLimits()
        self._tick_event = asyncio.Event()  # set (and replaced) when a tick is recorded
        self._recorded_at: dict[int, float] = {}  # tick -> time.monotonic() it reached this server
        self.watchers = Subscribers()  # the WatchFleet calls open now, and how far behind (metrics)
        self._built: tuple[Any, fleet_pb2.TickSummary] | None = None  # the newest summary's message
        self.hubs = ShardBatcher(supervisor, "hubs")
        self.branches = Branches(supervisor, write_comparison=write_comparison)
        self.operations = OperationStore(supervisor, self.branches)
        # Set (and replaced) when an operation may have changed: a tick, a control, a branch's
        # progress; WaitOperation sleeps on it instead of polling.
        self._ops_event = asyncio.Event()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # built outside the server's loop (a test): branch changes wake no one
            loop = None
        if loop is not None:
            def from_thread() -> None:
                loop.call_soon_threadsafe(self.wake_operations)

            self.branches.on_change = from_thread

    def wake_operations(self) -> None:
        """On the server loop: wake whoever waits for an operation to change."""
        wake, self._ops_event = self._ops_event, asyncio.Event()
        wake.set()

    def operations_changed(self) -> asyncio.Event:
        """The event the next change of any operation sets."""
        return self._ops_event

    def on_tick(self, s) -> None:
        """On the server loop: wake the WatchFleet streams (each reads the supervisor's history
        from its own cursor, so a slow one holds nothing back and copies nothing)."""
        self._recorded_at[s.tick] = time.monotonic()
        if len(self._recorded_at) > 2 * RECORDED_KEPT:  # beyond the supervisor's retained history
            self._recorded_at = {t: at for t, at in self._recorded_at.items() if t > s.tick - RECORDED_KEPT}
        wake, self._tick_event = self._tick_event, asyncio.Event()
        wake.set()
        self.wake_operations()

    def _clock(self) -> fleet_pb2.Clock:
        c = self.sup.clock()
        state = {"running": fleet_pb2.CLOCK_STATE_RUNNING, "failed": fleet_pb2.CLOCK_STATE_FAILED}.get(
            c["state"], fleet_pb2.CLOCK_STATE_PAUSED)
        return fleet_pb2.Clock(tick=c["tick"], time=ts(c["time"]), state=state, speed=c["speed"] or 0.0,
                               error=c.get("error") or "")

    async def GetClock(self, request, context):
        return self._clock()

    async def UpdateClock(self, request, context):
        if request.state not in fleet_pb2.ClockState.values():
            raise invalid("state", f"unknown clock state {request.state}: CLOCK_STATE_PAUSED or CLOCK_STATE_RUNNING")
        if not math.isfinite(request.speed):
            raise invalid("speed", f"must be a number, got {request.speed}")
        if request.speed > 0:
            self.sup.set_speed(request.speed)
        elif request.speed == 0 and request.state != fleet_pb2.CLOCK_STATE_UNSPECIFIED:
            self.sup.set_speed(None)
        if request.state == fleet_pb2.CLOCK_STATE_RUNNING:
            self.sup.start_clock(speed=self.sup.speed, running=True)
        elif request.state == fleet_pb2.CLOCK_STATE_PAUSED:
            self.sup.pause()
        return self._clock()

    async def StepClock(self, request, context):
        if not 1 <= request.count <= 10_000:
            raise invalid("count", f"must be between 1 and 10000, got {request.count}")
        await asyncio.to_thread(self.sup.step, request.count)
        return self._clock()

    async def CreateEvent(self, request, context):
        event = _event_dict(request)
        key, first = claim_request(self.sup.requests, request)
        if first is not None:  # a retry: the first Operation as it is now, nothing applied again
            try:
                return operation_message(await asyncio.to_thread(self.sup.operation, f"operations/{first.operation}"))
            except OperationRetired as e:  # it finished longer ago than the run keeps operations
                raise not_found("request_id", e.reason) from None
            except TwinInputError:  # journaled, not yet accepted again after a resume
                return operations_pb2.Operation(name=f"operations/{first.operation}")
        if key is None:
            return operation_message(await asyncio.to_thread(self.sup.submit, event))
        try:
            view = await asyncio.to_thread(self.sup.submit, event, request=key)
        except BaseException:
            self.sup.requests.fail(key.user, key.request_id)
            raise
        return operation_message(view)

    async def _control(self, name: str, action: OperationAction):
        """Pause, resume or cancel (AIP-151): NOT_FOUND for an unknown operation; the operation
        unchanged if it is already in the state asked for (a retry is harmless); FAILED_PRECONDITION
        if its state does not allow the action (it has finished, or is not running)."""
        if self.operations.is_branch(name):
            raise conflict(name, f"{name} makes a branch: it runs to its until_tick and cannot be {_PAST[action]}")
        view = await asyncio.to_thread(self.operations.view, name)
        state = OperationState(view["metadata"]["state"])
        if state in _ALREADY[action]:
            return operation_message(view)
        if view["done"]:
            raise conflict(name, f"{name} has finished ({state.name}): it can no longer be {_PAST[action]}")
        op = name.removeprefix("operations/")
        await asyncio.to_thread(self.sup.submit, {"type": "operation_control", "operation": op,
                                                  "action": action.value})
        self.wake_operations()  # a cancel before the start is done at once, with no tick
        return operation_message(await asyncio.to_thread(self.sup.operation, name))

    async def PauseOperation(self, request, context):
        return await self._control(request.name, OperationAction.PAUSE)

    async def ResumeOperation(self, request, context):
        return await self._control(request.name, OperationAction.RESUME)

    async def AggregateFleet(self, request, context):
        try:
            rows = await asyncio.to_thread(self.sup.aggregate, list(request.group_by))
        except ValueError as e:
            raise invalid("group_by", str(e)) from None
        out = [fleet_pb2.AggregateRow(labels={k: str(v) for k, v in r.items() if k not in ("hubs", "meters")},
                                      hubs=r["hubs"], meters=r["meters"]) for r in rows]
        return fleet_pb2.AggregateFleetResponse(rows=out, tick=self.sup.tick)

    async def GetHub(self, request, context):
        hub = hub_index(request.name, self.sup.config.seed, self.sup.config.hubs)
        return hub_message(await self.hubs.call(hub))

    async def ListHubs(self, request, context):
        page = page_of(request, default_size=50, max_size=MAX_PAGE)
        try:
            filters = parse_filter(request.filter)
        except ValueError as e:
            raise invalid("filter", str(e)) from None
        recs, nxt = await asyncio.to_thread(self.sup.list_hubs, filters, page.offset, page.size)
        return fleet_pb2.ListHubsResponse(hubs=[hub_message(r) for r in recs], next_page_token=next_page_token(request, nxt))

    async def ListHubEvents(self, request, context):
        # Resumes after the last event sent (its tick, and how many of that tick's were sent), so
        # alerts arriving between pages neither repeat nor hide older ones.
        asked = page_of(request, default_size=50, max_size=MAX_EVENTS_PAGE, positions=2)
        hub = hub_index(request.parent, self.sup.config.seed, self.sup.config.hubs, field="parent")
        size = asked.size
        events = await asyncio.to_thread(self.sup.hub_events, hub, size + 1, start=asked.start)
        page = events[:size]
        tick_time = self.sup.config.time_of
        out = [fleet_pb2.HubEvent(kind=AlertKind(e["kind"]).name, code=ALERT_CODES[AlertKind(e["kind"])], tick=e["tick"],
                                  time=ts(tick_time(e["tick"]) + timedelta(seconds=e["second"]))) for e in page]
        nxt = (page[-1]["tick"], page[-1]["rank"] + 1) if len(events) > size else None
        return fleet_pb2.ListHubEventsResponse(events=out, next_page_token=next_page_token(request, nxt))

    async def RewindClock(self, request, context):
        if request.tick > self.sup.tick:  # a tick the run has not reached yet: valid later (AIP-193)
            raise ApiError(grpc.StatusCode.OUT_OF_RANGE, f"tick: {request.tick} is beyond the current tick "
                                                         f"{self.sup.tick}; rewind goes back only", field="tick")
        await asyncio.to_thread(self.sup.rewind, int(request.tick))
        # The streams ahead of the rewound run end now, not at the next tick or recheck.
        wake, self._tick_event = self._tick_event, asyncio.Event()
        wake.set()
        return self._clock()

    async def CreateBranch(self, request, context):
        events = []
        for i, ev in enumerate(request.events):
            try:
                events.append(_event_dict(ev))
            except ApiError as e:
                raise invalid(f"events[{i}].{e.field}", e.message) from None
        key, first = claim_request(self.sup.requests, request)
        if first is not None:
            op = self.branches.operation(first.operation)
            if op is not None:
                return op  # a retry: the first Operation as it is now, nothing created again
        try:
            op = await asyncio.to_thread(self.branches.create, request, events)
        except BaseException:
            if key is not None:
                self.sup.requests.fail(key.user, key.request_id)
            raise
        if key is not None:
            self.sup.requests.finish(key.user, key.request_id, operation=op.name)
        return op

    async def GetBranch(self, request, context):
        return self.branches.message(self.branches.branch_dir(request.name))

    async def ListBranches(self, request, context):
        page = page_of(request, default_size=50, max_size=MAX_PAGE)
        all_ = await asyncio.to_thread(self.branches.list)  # oldest first: new branches come last
        branches, nxt = slice_page(request, all_, page)
        return fleet_pb2.ListBranchesResponse(branches=branches, next_page_token=nxt)

    async def CompareBranches(self, request, context):
        return await asyncio.to_thread(self.branches.compare, request.name, request.other)

    async def WatchFleet(self, request, context):
        """Tick summaries from the supervisor's retained history (`history`, 28 days by default).

        Every tick mode: each summary after the cursor in order (from `start_after_tick` if set,
        else the newest `backlog`, then live); ended RESOURCE_EXHAUSTED once a summary recorded
        after it began waits undelivered longer than `watch_delivery_s`, ABORTED if the run is
        behind it (rewound or restarted), both with `resume_after_tick`. Latest mode: the newest
        summary when the reader is ready, with `skipped_ticks`; ended only by a rewind."""
        if not 0 <= request.backlog <= MAX_BACKLOG:
            raise invalid("backlog", f"must be between 0 and {MAX_BACKLOG}, got {request.backlog}")
        if request.mode not in fleet_pb2.WatchMode.values():
            raise invalid("mode", f"unknown mode {request.mode}")
        latest = request.mode == fleet_pb2.WATCH_MODE_LATEST
        oldest, newest = self._history_span()
        if request.HasField("start_after_tick"):
            cursor = request.start_after_tick
            if cursor < -1:
                raise invalid("start_after_tick", f"must be -1 (every retained summary) or a tick, got {cursor}")
            if cursor < oldest - 1:
                raise expired("start_after_tick", cursor, oldest - 1, "tick summaries")
        else:
            cursor = newest if latest else max(newest - request.backlog, oldest - 1)
        began = time.monotonic()
        with self.watchers.subscribe() as sub:
            async for msg in self._watch(cursor, began, latest, sub):
                yield msg

    @property
    def watch_streams(self) -> int:
        """WatchFleet calls open now."""
        return self.watchers.open

    async def _watch(self, cursor: int, began: float, latest: bool, sub: Subscriber):
        while True:
            wake = self._tick_event
            oldest, newest = self._history_span()
            if newest < cursor:
                # The run is behind this stream (rewound, or resumed from an earlier checkpoint):
                # the ticks after `newest` run again, so the reader starts again from there.
                raise StreamEnd(grpc.StatusCode.ABORTED,
                                f"the run is at tick {newest + 1}, behind this stream (at tick {cursor}): it was "
                                f"rewound or restarted; resume with start_after_tick={newest}", reason=RUN_REWOUND,
                                metadata={"resume_after_tick": newest})
            if newest <= cursor:
                sub.waiting_since = None
                # Woken by the next tick; and every WATCH_RECHECK_S to look again, since a rewind
                # to just after a checkpoint replays no tick and records nothing.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=WATCH_RECHECK_S)
                continue
            # The newest summary (latest mode) or the next one waits undelivered since it was
            # recorded here, if after the stream began (as in the delivery window).
            at = self._recorded_at.get(newest if latest else cursor + 1, 0.0)
            sub.waiting_since = at if at >= began else None
            if latest:
                s = self._summary(newest)
                if s is None:  # the history moved under us (a rewind replacing it): look again
                    await asyncio.sleep(0.01)
                    continue
                msg = fleet_pb2.TickSummary()
                msg.CopyFrom(self._message(s))
                msg.skipped_ticks = newest - cursor - 1
                if msg.skipped_ticks:
                    self._merge_skipped_operations(msg, cursor + 1, newest)
                yield msg
                cursor = newest
                continue
            if cursor + 1 < oldest:
                raise expired("start_after_tick", cursor, oldest - 1, "tick summaries")
            if at >= began and time.monotonic() - at > self.limits.watch_delivery_s:
                raise behind("tick summary", "resume_after_tick", cursor, self.limits.watch_delivery_s)
            s = self._summary(cursor + 1)
            if s is None:
                await asyncio.sleep(0.01)
                continue
            yield self._message(s)
            cursor += 1

    def _merge_skipped_operations(self, msg: fleet_pb2.TickSummary, first: int, newest: int) -> None:
        """A latest-mode message skips ticks `first`..`newest - 1`: it carries each operation they
        changed too, as the newest change left it, so a latest-mode reader misses no operation.
        Costs the operations changed in the skipped ticks, not the summaries' figures."""
        latest: dict[str, Any] = {}
        for t in range(first, newest + 1):
            s = self._summary(t)
            for v in (s.operations if s is not None else ()):
                latest.pop(v["name"], None)  # re-inserted: ordered by its newest change
                latest[v["name"]] = v
        del msg.operations[:]
        msg.operations.extend(operation_message(v) for v in latest.values())

    def _message(self, s) -> fleet_pb2.TickSummary:
        """The message of summary `s`, built once for every stream that is at the newest tick
        (the live case) rather than once per stream."""
        if self._built is None or self._built[0] is not s:
            cfg = self.sup.config
            self._built = (s, summary_message(s, cfg.time_of(s.tick + 1), capacity=cfg.params.capacity,
                                              time_of=cfg.time_of))
        return self._built[1]

    def _history_span(self) -> tuple[int, int]:
        """(oldest, newest) tick in the supervisor's retained history; (tick, tick - 1) if empty."""
        h = self.sup.history
        try:
            return h[0].tick, h[-1].tick
        except IndexError:
            return self.sup.tick, self.sup.tick - 1

    def _summary(self, tick: int):
        """The retained summary of `tick`, or None. The clock thread appends to the history while
        this reads it, so the index is checked and, if it moved, the history searched."""
        h = self.sup.history
        try:
            s = h[tick - h[0].tick]
            if s.tick == tick:
                return s
        except IndexError:
            pass
        return next((s for s in reversed(h) if s.tick == tick), None)

    async def GetFleetCatalog(self, request, context):
        """Reference data for any signed-in caller (names only, nothing about the run but the
        firmware versions its rollouts introduced)."""
        return fleet_catalog(await asyncio.to_thread(self.sup.firmware_versions))

    async def GetCluster(self, request, context):
        """Nodes, shards per node and the newest recoveries (a second's wait at most, off the loop)."""
        view = await asyncio.to_thread(self.sup.cluster, timeout_s=CLUSTER_WAIT_S)
        return cluster_message(view, self.sup.config.time_of)


class OperationsServicer(operations_pb2_grpc.OperationsServicer):
    """google.longrunning.Operations: anyone authenticated may get an operation; listing and
    cancelling are for operators."""

    def __init__(self, supervisor: FleetEngine, branches: Branches | None, fleet: FleetServicer):
        self.sup = supervisor
        self.fleet = fleet  # pause, resume and cancel share its checks
        # The one store of operations, the fleet's and the branches' (the fleet servicer's own,
        # unless this servicer is given other branches).
        self.store = fleet.operations if branches is fleet.branches else OperationStore(supervisor, branches)

    async def GetOperation(self, request, context):
        return await asyncio.to_thread(self.store.get, request.name)

    async def ListOperations(self, request, context):
        asked = page_of(request, default_size=50, max_size=MAX_PAGE, positions=2)
        keep = _operation_filter(request.filter)
        page, nxt = await asyncio.to_thread(self.store.page, keep, asked.start or (0, 0), asked.size)
        return operations_pb2.ListOperationsResponse(operations=page, next_page_token=next_page_token(request, nxt))

    async def CancelOperation(self, request, context):
        await self.fleet._control(request.name, OperationAction.CANCEL)
        return empty_pb2.Empty()

    async def DeleteOperation(self, request, context):
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED,
                       "operations are part of the run's record and are never deleted; cancel instead")

    async def WaitOperation(self, request, context):
        timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else 30.0
        loop = asyncio.get_running_loop()
        end = loop.time() + min(max(timeout, 0.0), 600.0)
        while True:
            changed = self.fleet.operations_changed()  # taken before reading, so no change is missed
            op = await self.GetOperation(operations_pb2.GetOperationRequest(name=request.name), context)
            if op.done or loop.time() >= end:
                return op
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=end - loop.time())


_OPERATION_FIELDS = frozenset(f.value for f in OperationField)


def _operation_filter(text: str) -> OperationFilter | None:
    """An AIP-160 filter of ListOperations: `field=value` or `field!=value` on done, kind or state,
    several joined by AND (e.g. `done=false AND kind!=service_request`)."""
    if not text.strip(" \t"):
        return None
    tests = []
    for term in re.split(r"[ \t]+AND[ \t]+", text.strip(" \t"), flags=re.ASCII):
        m = re.fullmatch(r"[ \t]*([a-z_]+)[ \t]*(!=|=)[ \t]*\"?([A-Za-z0-9_-]+)\"?[ \t]*", term, re.ASCII)
        if m is None or m.group(1) not in _OPERATION_FIELDS:
            raise invalid("filter", f"cannot read {shown(term)}: filter on done, kind or state with = or !=, joined by "
                                    "AND, e.g. done=false AND kind!=service_request")
        tests.append(OperationTerm(OperationField(m.group(1)), m.group(3).lower(), negate=m.group(2) == "!="))
    return OperationFilter(terms=tuple(tests))
