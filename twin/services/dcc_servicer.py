"""DccService: Service Requests from DCC Users, checked (eligibility, premises, signatures,
anomaly thresholds), routed to the CSP of the hub's region, answered now or acknowledged and
answered later on a stream; and device alerts streamed to the users entitled to them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2

from twin.background import spawn
from twin.engine.alert_log import AlertCursor, TickAlerts, position
from twin.engine.requests import RequestKey, RequestLedger, parse_request_id, request_digest
from twin.generated.dcc.v1 import dcc_pb2, dcc_pb2_grpc
from twin.model.catalog import PREPAYMENT_ALERTS, AlertKind
from twin.model.config import TwinInputError
from twin.model.grammar import GrammarError, name_key
from twin.model.ids import eui64, parse_eui64
from twin.model.ops.progress import OperationState
from twin.model.ops.validation import CommandConflict
from twin.model.params import HALF_HOURS_PER_DAY, TICK_SECONDS
from twin.model.query import REGION_OF_AREA
from twin.model.readings import READ_SRVS
from twin.services import duis
from twin.services.anomaly import AnomalyDetector, QuarantineFull, entry_number
from twin.services.batching import ShardBatcher
from twin.services.convert import ALERT_CODES, hub_index, page_start, page_token, ts
from twin.services.errors import ApiError, conflict, denied, invalid, quarantined
from twin.services.identity import OPERATOR, Identity
from twin.services.policy import PolicyError, authorise
from twin.services.retries import check_request_id, claim
from twin.services.server import current_identity
from twin.services.signing import SignatureChecker, SignatureError
from twin.services.streams import StreamLimits, ahead, behind, expired

log = logging.getLogger(__name__)

DEVICE_CHANGES = {"2.2", "1.1.1", "7.1", "7.2", "8.14.1", "8.14.2", "8.14.3", "8.14.4"}
PENDING_READ_DAYS = 2.0  # an acknowledged read fails if the hub stays dark this long [U]
ANSWER_WITHIN_S = 3.0  # how long a device-changing request waits for its tick before acknowledging
MAX_PARAMETERS_BYTES = 64 * 1024
QUARANTINE_PAGE, MAX_QUARANTINE_PAGE = 100, 1000
QUARANTINE_PAGE_BYTES = 2 * 1024 * 1024  # half the 4 MiB message limit
MAX_RELEASED = 10_000  # answers of recent releases kept, so a retried release answers the same
# SRVs answered from the whole hub record (coverage, devices); the rest need only the premises' facts.
NEEDS_RECORD = {"12.1", "11.1", "11.2"}


@dataclass(eq=False)
class _Pending:
    user_id: str
    request: dcc_pb2.SubmitServiceRequestRequest
    hub: int
    fuel: str
    csp: str
    deadline_tick: int
    operation: str = ""


@dataclass(eq=False)
class _ResponseLog:
    """One user's deferred responses, numbered 1, 2, ... (the newest `keep` of them, each with
    the time.monotonic() it was produced)."""

    keep: int
    items: deque[tuple[float, dcc_pb2.ServiceResponse]] = field(default_factory=deque)
    last: int = 0  # position of the newest
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def first(self) -> int:
        """Position of the oldest kept (last + 1 when none is kept)."""
        return self.last - len(self.items) + 1

    def append(self, resp: dcc_pb2.ServiceResponse) -> None:
        self.last += 1
        resp.position = self.last
        self.items.append((time.monotonic(), resp))
        if len(self.items) > self.keep:
            self.items.popleft()
        wake, self.wake = self.wake, asyncio.Event()
        wake.set()


class DccServicer(dcc_pb2_grpc.DccServiceServicer):
    def __init__(self, supervisor, server, *, anomaly: AnomalyDetector | None = None,
                 signatures: SignatureChecker | None = None, limits: StreamLimits | None = None):
        self.sup = supervisor
        self.server = server
        self.anomaly = anomaly or AnomalyDetector()
        self.signatures = signatures or SignatureChecker()
        self.limits = limits or StreamLimits()
        self.responses: dict[str, _ResponseLog] = {}
        self.pending: list[_Pending] = []
        self._released: OrderedDict[str, bytes] = OrderedDict()  # quarantine id -> first answer
        self.alert_streams = 0  # StreamAlerts calls open now
        self.response_streams = 0  # StreamResponses calls open now
        self._tick_event = asyncio.Event()  # set (and replaced) when a tick is recorded
        self._tick_busy = False
        self.facts = ShardBatcher(supervisor, "service_facts_many")
        # Request ids seen (retries answered, DUIS counters enforced): the engine's, which the
        # journal rebuilds on resume; an API replica without an engine keeps its own.
        ledger = getattr(supervisor, "requests", None)
        self.ledger: RequestLedger = ledger if isinstance(ledger, RequestLedger) else RequestLedger()

    # -- the request path ------------------------------------------------------------------
    async def SubmitServiceRequest(self, request, context):
        identity = current_identity()
        if identity.role == OPERATOR:
            raise denied("operators do not send Service Requests; use a DCC User identity", "srv")
        key, first = await self._claim(identity, request)
        if first is not None:
            return first  # a retry: the first answer, nothing applied again
        try:
            resp = await self._submit(identity, request, key)
        except BaseException:
            if self.ledger.fail(key.user, key.request_id):
                self.signatures.forget(key.user, key.request_id)  # refused: it may be signed and sent again
            raise
        self.ledger.finish(key.user, key.request_id, answer=resp.SerializeToString())
        return resp

    async def _submit(self, identity: Identity, request, key: RequestKey) -> dcc_pb2.SubmitServiceRequestResponse:
        srv, hub, fuel, facts, payload = await self._check(identity, request)
        try:
            # The request is kept only if it is quarantined, so its copy is made only then.
            entry = self.anomaly.admit(identity.user_id, srv.srv, lambda: {
                "srv": request.srv, "target": request.target, "request_id": request.request_id,
                "issued_at_ms": request.issued_at_ms, "parameters": payload,
                "signature": request.signature.hex()})
        except QuarantineFull as e:  # the quarantine itself is full: refuse, never UNKNOWN
            raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e), quota="quarantine") from None
        if entry is not None:
            self.ledger.hold(key.user, key.request_id, entry.id)
            raise quarantined(entry.id, f"{entry.count} {srv.srv} requests from {identity.user_id} in the "
                                               f"window passed the threshold of {entry.threshold}")
        resp = await self._process(identity, request, srv, hub, fuel, facts["hub"], payload, facts.get("result"),
                                   facts.get("tick"), key=key)
        return dcc_pb2.SubmitServiceRequestResponse(response=resp)

    async def _claim(self, identity: Identity, request
                     ) -> tuple[RequestKey, dcc_pb2.SubmitServiceRequestResponse | None]:
        """The request's key, claimed in the ledger; or, for a retry of an answered request, the
        first answer (its operation's outcome if that has finished since). Raises ApiError for an
        id that may not be used (see twin.engine.requests)."""
        check_request_id(request.request_id, required=True)
        key = RequestKey(identity.user_id, request.request_id, _digest(request))
        seen = claim(self.ledger, key)
        if seen is None:
            return key, None
        return key, await self._first_answer(request, seen)

    async def _first_answer(self, request, seen) -> dcc_pb2.SubmitServiceRequestResponse:
        if seen.operation:
            name = f"operations/{seen.operation}"
            try:
                view = await asyncio.to_thread(self.sup.operation, name)
            except TwinInputError:  # journaled, not yet accepted again after a resume
                view = {"name": name, "done": False}
            if view["done"] or not seen.answer:
                cfg = self.sup.config
                hub = hub_index(request.target, cfg.seed, cfg.hubs, field="target")
                csp = (await self.facts.call(hub, request.srv, "elec", False))["hub"]["region"]
                base = _response_base(request, csp)
                if view["done"]:
                    return dcc_pb2.SubmitServiceRequestResponse(
                        response=_op_response(base, view, cfg.time_of(self.sup.tick)))
                return dcc_pb2.SubmitServiceRequestResponse(response=_response(
                    base, dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED, cfg.time_of(self.sup.tick), {},
                    operation=view["name"], detail="accepted; it applies when the hub is reached, and the response "
                                                   "follows on StreamResponses"))
        return dcc_pb2.SubmitServiceRequestResponse.FromString(seen.answer)

    async def _check(self, identity: Identity, request) -> tuple[duis.Srv, int, str, dict[str, Any], dict[str, Any]]:
        """Validate and authorise; returns the SRV, hub, fuel, the shard's facts (the premises, with
        the whole hub record for the SRVs that answer from it, and the reading for a read) and the
        parameters as a dict."""
        try:
            srv = duis.lookup(request.srv)
        except duis.UnknownSrv as e:
            raise invalid("srv", str(e)) from None
        if srv.srv not in duis.IMPLEMENTED:
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED, f"the twin does not implement SRV {srv.srv} ({srv.name})",
                           field="srv")
        if request.parameters.ByteSize() > MAX_PARAMETERS_BYTES:
            raise invalid("parameters", f"{request.parameters.ByteSize():,} bytes; at most {MAX_PARAMETERS_BYTES:,}")
        cfg = self.sup.config
        hub = hub_index(request.target, cfg.seed, cfg.hubs, field="target")
        _check_duis_target(request.request_id, hub, cfg.seed)
        fuel = duis.FUEL.get(srv.srv, "either")
        params = json_format.MessageToDict(request.parameters) if request.HasField("parameters") else {}
        read_fuel = _read_fuel(identity.role, params)
        # One shard call: the premises' facts, and the answer if it is a read (discarded if the
        # checks below refuse the request).
        facts = await self.facts.call(hub, srv.srv, "gas" if read_fuel == "gas" else "elec", srv.srv in NEEDS_RECORD)
        rec = facts["hub"]
        try:
            if srv.srv == "6.23":
                # The gaining supplier sends the credential swap for premises it does not yet supply.
                if identity.role not in srv.roles:
                    raise PolicyError("PERMISSION_DENIED", f"role {identity.role} may not send 6.23", field="srv")
            else:
                authorise(identity, srv, fuel=fuel if fuel != "either" else _role_fuel(identity.role, read_fuel),
                          hub_supplier=rec["supplier_code"], hub_gas_supplier=rec["gas_supplier_code"],
                          hub_area=rec["area_id"], has_gas=rec["has_gas"])
        except PolicyError as e:
            if e.code == "PERMISSION_DENIED":
                raise denied(e.message, e.field) from None
            raise invalid(e.field or "target", e.message) from None
        if srv.critical:
            try:
                self.signatures.verify(identity, request.signature or None, srv=srv.srv, target=request.target,
                                       request_id=request.request_id, issued_at_ms=request.issued_at_ms,
                                       payload=params)
            except SignatureError as e:
                if e.reason == "missing signature":
                    raise invalid("signature", f"SRV {srv.srv} is critical and must be signed") from None
                raise denied(f"signature rejected: {e.reason}", "signature") from None
        _check_params(srv.srv, params)
        if "error" in facts:
            raise invalid("parameters.fuel", facts["error"])
        return srv, hub, read_fuel, facts, params

    async def _process(self, identity: Identity, request, srv: duis.Srv, hub: int, fuel: str,
                       rec: dict[str, Any], params: dict[str, Any],
                       reading: dict[str, Any] | None = None, reading_tick: int | None = None, *,
                       key: RequestKey | None = None) -> dcc_pb2.ServiceResponse:
        csp = rec["region"]
        base = _response_base(request, csp)
        # A reading is stamped with the end of the tick it describes; the rest with the fleet's now.
        now = self.sup.config.time_of(self.sup.tick if reading_tick is None else reading_tick + 1)
        if srv.srv == "12.1":
            return _response(base, dcc_pb2.RESPONSE_STATUS_COMPLETED, now, {
                "technology": rec["wan"], "available": rec["reachable"] or ("network switched off" not in rec["dark_reasons"]
                and "no WAN coverage" not in rec["dark_reasons"]), "mesh": rec["mesh"],
                "vwan_eligible": rec["vwan_eligible"], "region": csp})
        if srv.srv in READ_SRVS or srv.srv == "11.2":
            if rec["reachable"]:
                result = reading if reading is not None else await self._read(srv.srv, hub, fuel, rec)
                return _response(base, dcc_pb2.RESPONSE_STATUS_COMPLETED, now, result)
            self.pending.append(_Pending(identity.user_id, request, hub, fuel, csp,
                                         self.sup.tick + round(PENDING_READ_DAYS * HALF_HOURS_PER_DAY)))
            return _response(base, dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED, now, {},
                             detail="the hub is not reachable now; the response will follow on StreamResponses")
        event = self._event_for(identity, srv.srv, hub, rec, params, request.request_id)
        try:
            view = await asyncio.to_thread(self.sup.submit, event, request=key)
        except CommandConflict as e:  # e.g. an SR 6.23 to a supplier that has failed: the state forbids it
            raise conflict(f"parameters.{e.field}" if e.field in params else e.field, str(e)) from None
        except TwinInputError as e:
            # A field the request's parameters gave (an SR 11.1's target_version) is named as sent.
            raise invalid(f"parameters.{e.field}" if e.field in params else e.field, e.reason) from None
        name = view["name"]
        waited = 0.0
        while self.sup.clock_state == "running" and waited < ANSWER_WITHIN_S:
            view = await asyncio.to_thread(self.sup.operation, name)
            if view["done"]:
                return _op_response(base, view, self.sup.config.time_of(self.sup.tick))
            await asyncio.sleep(0.05)
            waited += 0.05
        self.pending.append(_Pending(identity.user_id, request, hub, fuel, csp, -1, operation=name))
        return _response(base, dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED, now, {}, operation=name,
                         detail="accepted; it applies when the hub is reached, and the response follows on "
                                "StreamResponses")

    def _event_for(self, identity: Identity, srv: str, hub: int, rec: dict[str, Any], params: dict[str, Any],
                   request_id: str) -> dict[str, Any]:
        if srv in DEVICE_CHANGES:
            return {"type": "service_request", "srv": srv, "hub": hub, "user_id": identity.user_id,
                    "request_id": request_id, "params": {k: v for k, v in params.items() if k != "fuel"}}
        if srv == "6.23":
            fuel = "gas" if identity.role == "GS" else "electricity"
            from twin.model.catalog import SUPPLIERS

            return {"type": "supplier_switch", "hub": hub, "fuel": fuel,
                    "to_supplier": SUPPLIERS[identity.party_id - 1].name}
        if srv == "11.1":
            try:  # ASCII only: upper() maps the long s (U+017F) onto 'S'
                device = name_key(params.get("device", "GSME" if identity.role == "GS" else "ESME"), "device").upper()
            except GrammarError as e:
                raise invalid("parameters.device", str(e)) from None
            dev = {"CH": rec["comms_hub"], "ESME": rec["meters"][0],
                   "GSME": rec["meters"][1] if len(rec["meters"]) > 1 else None, "PPMID": rec["ppmid"]}.get(device)
            if dev is None:
                raise invalid("parameters.device", f"the premises has no {device}")
            return {"type": "firmware_rollout", "device": device, "manufacturer": dev["manufacturer"],
                    "model": dev["model"], "target_version": params["target_version"], "hubs": [hub],
                    "waves": [1.0], "hold_activation": True, "allow_downgrade": bool(params.get("allow_downgrade"))}
        if srv == "11.3":
            # The image an SR 11.1 distributed to this device, still held for activation.
            waiting, _ = self.sup.operations_page(
                lambda op: (op.cmd.kind == "firmware_rollout" and tuple(op.cmd.hubs) == (hub,)
                            and op.cmd.hold_activation and not op.done), 0, 1)
            if waiting:
                return {"type": "operation_control", "operation": waiting[0]["name"].split("/")[1], "action": "activate"}
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           "no image distributed to this device is waiting: send SR 11.1 first", field="target",
                           precondition="target")
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, f"SRV {srv} is not implemented", field="srv")

    async def _read(self, srv: str, hub: int, fuel: str, rec: dict[str, Any]) -> dict[str, Any]:
        if srv == "11.2":
            devices = [d for d in [rec["comms_hub"], *rec["meters"], rec["ppmid"]] if d]
            return {"devices": [{"device_id": d["device_id"], "type": d["type"], "firmware": d["firmware"]}
                                for d in devices]}
        try:
            return await asyncio.to_thread(self.sup.read, hub, srv, "gas" if fuel == "gas" else "elec")
        except ValueError as e:
            raise invalid("parameters.fuel", str(e)) from None

    # -- deferred responses -------------------------------------------------------------------
    def on_tick(self, summary) -> None:
        """On the server loop after each tick: finish deferred requests, wake the alert streams
        (they read the tick from the supervisor's alert log)."""
        wake, self._tick_event = self._tick_event, asyncio.Event()
        wake.set()
        if self.pending and not self._tick_busy:
            self._tick_busy = True
            spawn(self._settle(summary.tick), name=f"settle-{summary.tick}")

    async def _settle(self, tick: int) -> None:
        """Try every deferred request at once (the reads share the shards' batched calls); one
        that fails stays deferred for the next tick without holding up the others."""
        pending = list(self.pending)
        try:
            results = await asyncio.gather(*(self._try_settle(p, tick) for p in pending), return_exceptions=True)
            settled = {id(p) for p, done in zip(pending, results, strict=True) if done is True}
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                log.warning("%d deferred _response(s) could not be settled at tick %d (kept for the next tick): %r",
                            len(failed), tick, failed[0])
            # Requests acknowledged while this ran are kept.
            self.pending = [p for p in self.pending if id(p) not in settled]
        finally:
            self._tick_busy = False

    async def _try_settle(self, p: _Pending, tick: int) -> bool:
        base = _response_base(p.request, p.csp)
        now = self.sup.config.time_of(tick + 1)
        if p.operation:
            view = await asyncio.to_thread(self.sup.operation, p.operation)
            if not view["done"]:
                return False
            self._push(p.user_id, _op_response(base, view, now))
            return True
        srv = p.request.srv
        facts = await self.facts.call(p.hub, srv, "gas" if p.fuel == "gas" else "elec", srv in NEEDS_RECORD)
        rec = facts["hub"]
        if rec["reachable"]:
            if "error" in facts:  # the premises lost its gas meter meanwhile
                self._push(p.user_id, _response(base, dcc_pb2.RESPONSE_STATUS_FAILED, now, {}, detail=facts["error"]))
                return True
            result = facts["result"] if "result" in facts else await self._read(srv, p.hub, p.fuel, rec)
            self._push(p.user_id, _response(base, dcc_pb2.RESPONSE_STATUS_COMPLETED, now, result))
            return True
        if tick >= p.deadline_tick:
            self._push(p.user_id, _response(base, dcc_pb2.RESPONSE_STATUS_FAILED, now, {},
                                            detail="the hub stayed unreachable"))
            return True
        return False

    def _responses_of(self, user_id: str) -> _ResponseLog:
        log_ = self.responses.get(user_id)
        if log_ is None:
            log_ = self.responses[user_id] = _ResponseLog(self.limits.responses_kept)
        return log_

    def _push(self, user_id: str, resp: dcc_pb2.ServiceResponse) -> None:
        """Keep a deferred response for the user's streams (open now or resumed later)."""
        self._responses_of(user_id).append(resp)

    async def StreamResponses(self, request, context):
        """The caller's deferred responses in position order, from `start_after_position` if set
        (else from now). Ends RESOURCE_EXHAUSTED (resume_after_position) once a response
        produced after it began waits undelivered longer than `response_delivery_s`."""
        log_ = self._responses_of(current_identity().user_id)
        began = time.monotonic()
        if request.HasField("start_after_position"):
            cursor = request.start_after_position
            if cursor < log_.first - 1:
                raise expired("start_after_position", cursor, log_.first - 1, "responses")
            if cursor > log_.last:
                raise ahead("start_after_position", cursor, log_.last, "responses")
        else:
            cursor = log_.last
        self.response_streams += 1
        try:
            while True:
                wake = log_.wake
                if cursor >= log_.last:
                    await wake.wait()
                    continue
                if cursor < log_.first - 1:  # a replay slower than responses arrive outran the kept ones
                    raise expired("start_after_position", cursor, log_.first - 1, "responses")
                at, resp = log_.items[cursor + 1 - log_.first]
                if at >= began and time.monotonic() - at > self.limits.response_delivery_s:
                    raise behind("response", "resume_after_position", cursor, self.limits.response_delivery_s)
                yield resp
                cursor += 1
        finally:
            self.response_streams -= 1

    # -- alerts ---------------------------------------------------------------------------------
    async def StreamAlerts(self, request, context):
        """The alerts the caller may see and asked for, in position order: from the alert log
        after `start_after_position` if set (replayed, then live), else from the next tick.

        The live path reads the log's in-memory newest ticks: nothing is copied per subscriber
        but the indices of its alerts in the tick it is reading. A stream that leaves an alert
        sent after it began undelivered longer than `alert_delivery_s` is ended RESOURCE_EXHAUSTED with
        the position to resume after (what it delivered last); a position before the retained
        alerts ends OUT_OF_RANGE with the oldest one allowed."""
        identity = current_identity()
        kinds = set()
        for k in request.kinds:
            try:
                kinds.add(int(AlertKind[k]))
            except KeyError:
                raise invalid("kinds", f"unknown alert kind {k!r}; kinds are "
                                       + ", ".join(a.name for a in AlertKind)) from None
        log_ = self.sup.alert_log
        began = time.monotonic()
        if request.HasField("start_after_position"):
            cursor = request.start_after_position
            if cursor < 0:
                raise invalid("start_after_position", f"must not be negative, got {cursor}")
        else:
            cursor = position(log_.newest_tick + 1, 0)
        reader = AlertCursor(log_, cursor, lambda cols: _alert_mask(identity, kinds, cols))
        if reader.expired():
            raise expired("start_after_position", cursor, log_.oldest_position(), "alerts")
        self.alert_streams += 1
        try:
            while True:
                wake = self._tick_event
                tick = reader.next_tick()
                if tick is None:
                    await wake.wait()
                    continue
                ta = log_.cached(tick) or await asyncio.to_thread(log_.get, tick)
                if ta is None:  # pruned while this stream replayed older ticks
                    raise expired("start_after_position", reader.after, log_.oldest_position(), "alerts")
                fresh = ta.recorded_at >= began
                t0 = self.sup.config.time_of(tick)
                for chunk in reader.chunks(ta):
                    for i in map(int, chunk):
                        if fresh and time.monotonic() - ta.recorded_at > self.limits.alert_delivery_s:
                            raise behind("alert", "resume_after_position", reader.after,
                                         self.limits.alert_delivery_s)
                        yield self._alert_message(ta, i, t0)
                        reader.delivered(ta, i)
                reader.finished(ta)
        finally:
            self.alert_streams -= 1

    def _alert_message(self, ta: TickAlerts, i: int, t0) -> dcc_pb2.DeviceAlert:
        c = ta.cols
        kind = AlertKind(int(c["kind"][i]))
        area = int(c["area"][i])
        return dcc_pb2.DeviceAlert(kind=kind.name, hub=f"hubs/{eui64(int(c['hub'][i]), self.sup.config.seed)}",
                                   area_id=area, csp=REGION_OF_AREA.get(area, ""), code=ALERT_CODES[kind],
                                   time=ts(t0 + _seconds(int(c["sec"][i]))), position=position(ta.tick, i + 1))

    # -- quarantine -------------------------------------------------------------------------------
    async def ListQuarantinedRequests(self, request, context):
        identity = current_identity()
        user = request.user_id or None
        if identity.role != OPERATOR:
            if user not in (None, identity.user_id):
                raise denied("users may list only their own quarantined requests", "user_id")
            user = identity.user_id
        if request.page_size < 0:
            raise invalid("page_size", f"must not be negative, got {request.page_size}")
        size = min(request.page_size or QUARANTINE_PAGE, MAX_QUARANTINE_PAGE)
        start = page_start(request)
        entries = self.anomaly.page(user, start[0] if start else 0, size + 1)
        out, used = [], 0
        for e in entries[:size]:
            msg = _quarantined(e)
            # A request's parameters may be up to 64 KiB: a page stops short of its byte budget
            # (AIP-158 lets a page hold fewer than page_size), so it always fits a message.
            if out and used + msg.ByteSize() > QUARANTINE_PAGE_BYTES:
                break
            out.append(msg)
            used += msg.ByteSize()
        more = entries[len(out)] if len(entries) > len(out) else None
        return dcc_pb2.ListQuarantinedRequestsResponse(
            requests=out, next_page_token=page_token(request, entry_number(more.id)) if more is not None else "")

    async def ReleaseQuarantinedRequest(self, request, context):
        if current_identity().role != OPERATOR:
            raise denied("only an operator may release a quarantined request")
        try:
            entry = self.anomaly.release(request.id)
        except KeyError:
            done = self._released.get(request.id)
            if done is not None:  # a retry of a release: its first answer, nothing processed again
                return dcc_pb2.SubmitServiceRequestResponse.FromString(done)
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"no quarantined request {request.id!r}", field="id") from None
        sender = next((u for u in self.server.users.users() if u.user_id == entry.user_id), None)
        if sender is None:
            raise conflict("user_id", f"user {entry.user_id} no longer exists")
        req = dcc_pb2.SubmitServiceRequestRequest(srv=entry.request["srv"], target=entry.request["target"],
                                                  request_id=entry.request["request_id"])
        params = entry.request.get("parameters") or {}
        if params:
            req.parameters.update(params)
        key = RequestKey(sender.user_id, req.request_id, _digest(req))
        self.ledger.release(key.user, key.request_id)
        try:
            srv = duis.lookup(req.srv)
            cfg = self.sup.config
            hub = hub_index(req.target, cfg.seed, cfg.hubs, field="target")
            fuel = _read_fuel(sender.role, params)
            facts = await self.facts.call(hub, srv.srv, "gas" if fuel == "gas" else "elec", srv.srv in NEEDS_RECORD)
            resp = dcc_pb2.SubmitServiceRequestResponse(response=await self._process(
                sender, req, srv, hub, fuel, facts["hub"], params, facts.get("result"), facts.get("tick"), key=key))
        except BaseException:
            self.ledger.fail(key.user, key.request_id)
            raise
        answer = resp.SerializeToString()
        self.ledger.finish(key.user, key.request_id, answer=answer)
        self._released[request.id] = answer
        while len(self._released) > MAX_RELEASED:
            self._released.popitem(last=False)
        return resp

    async def DeleteQuarantinedRequest(self, request, context):
        if current_identity().role != OPERATOR:
            raise denied("only an operator may delete a quarantined request")
        try:
            entry = self.anomaly.delete(request.id)
        except KeyError:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"no quarantined request {request.id!r}", field="id") from None
        self.ledger.fail(entry.user_id, entry.request["request_id"], held=True)  # never applied: its id is free
        return _quarantined(entry)


def _read_fuel(role: str, params: dict[str, Any]) -> str:
    """The fuel a request's `fuel` parameter names ("electricity" or "gas"; a gas supplier's
    default is gas), by the ASCII name grammar; INVALID_ARGUMENT naming parameters.fuel."""
    try:
        fuel = name_key(params.get("fuel", "gas" if role == "GS" else "electricity"), "fuel")
    except GrammarError:
        fuel = ""
    if fuel not in ("electricity", "gas"):
        raise invalid("parameters.fuel", "electricity or gas")
    return fuel


def _check_duis_target(request_id: str, hub: int, seed: int) -> None:
    """A DUIS RequestID names the device the request is for: it must be one at the target premises."""
    duis_id = parse_request_id(request_id)  # already checked by the claim
    if duis_id is None:
        return
    try:
        named, _ = parse_eui64(duis_id.target, seed)
    except ValueError:
        named = -1
    if named != hub:
        raise invalid("request_id", f"its target EUI {duis_id.target} is not a device at the target premises")


def _digest(request: dcc_pb2.SubmitServiceRequestRequest) -> str:
    """What a Service Request asks for (SRV, premises, parameters), for telling a retry from an id
    reused; a request rebuilt from its quarantine copy has the same digest."""
    return request_digest(request.srv, request.target, request.parameters.SerializeToString(deterministic=True))


def _alert_mask(ident: Identity, kinds: set[int], ev: dict[str, np.ndarray]) -> np.ndarray:
    """The alerts of a tick (alert log columns) that the subscriber may see and asked for."""
    mask = np.ones(ev["hub"].size, bool)
    if ident.role in ("ED", "GT", "GS"):
        # An ESME's prepayment alerts are the import supplier's business, not the network's or gas's.
        mask &= ~np.isin(ev["kind"], PREPAYMENT_ALERTS)
    if ident.role in ("ED", "GT"):
        mask &= ev["area"] == ident.party_id
    elif ident.role in ("IS", "ES", "RSA"):
        mask &= ev["supplier"] == ident.party_id
    elif ident.role == "GS":
        mask &= ev["gas_supplier"] == ident.party_id
    elif ident.role != OPERATOR:
        mask[:] = False
    if kinds:
        mask &= np.isin(ev["kind"], list(kinds))
    return mask


def _role_fuel(role: str, fuel: str) -> str:
    return {"IS": "electricity", "ES": "electricity", "RSA": "electricity", "GS": "gas"}.get(role, fuel)


def _check_params(srv: str, p: dict[str, Any]) -> None:
    if srv == "2.2":
        amount = p.get("amount_pence")
        if not isinstance(amount, int | float) or int(amount) != amount or not 1 <= amount <= 100_000:
            raise invalid("parameters.amount_pence", "a whole number of pence from 1 to 100000")
    if srv == "1.1.1":
        rate = p.get("unit_rate_pence")
        if not isinstance(rate, int | float) or not 0 < rate < 500:
            raise invalid("parameters.unit_rate_pence", "a unit rate in pence per kWh, above 0 and below 500")
    if srv == "11.1" and not isinstance(p.get("target_version"), str):
        raise invalid("parameters.target_version", "the firmware version to distribute")


def _response_base(request: dcc_pb2.SubmitServiceRequestRequest, csp: str) -> dict[str, Any]:
    """The fields every response to `request` repeats (the SRV as sent; lookup() accepts only exact ids)."""
    return {"request_id": request.request_id, "srv": request.srv, "target": request.target, "csp": csp}


def _response(base: dict[str, Any], status: int, when, result: dict[str, Any], *, detail: str = "",
              operation: str = "") -> dcc_pb2.ServiceResponse:
    st = struct_pb2.Struct()
    st.update(result)  # plain numbers, strings, bools, lists and dicts: the model rounds to Python floats
    return dcc_pb2.ServiceResponse(**base, status=status, time=ts(when), result=st, detail=detail, operation=operation)


def _op_response(base: dict[str, Any], view: dict[str, Any], when) -> dcc_pb2.ServiceResponse:
    md = view["metadata"]
    ok = md["state"] == OperationState.DONE
    return _response(base, dcc_pb2.RESPONSE_STATUS_COMPLETED if ok else dcc_pb2.RESPONSE_STATUS_FAILED, when,
                     md["progress"].result(),
                     detail=md["reason"], operation=view["name"])


def _quarantined(e) -> dcc_pb2.QuarantinedRequest:
    from datetime import UTC, datetime

    return dcc_pb2.QuarantinedRequest(id=e.id, user_id=e.user_id, srv=e.srv, request_json=json.dumps(e.request),
                                      count=e.count, threshold=e.threshold,
                                      quarantined_at=ts(datetime.fromtimestamp(e.quarantined_at, UTC)))


def _seconds(s: int):
    from datetime import timedelta

    return timedelta(seconds=min(max(s, 0), TICK_SECONDS - 1))

