"""DccService: the gRPC front door of the DCC. It only translates: protobuf requests to the plain
dataclasses of twin.services.dcc (where Service Requests are checked, routed, deferred and
quarantined, and alerts fanned out), and back; DccError to a status with google.rpc details.
Who may call each method is the permission table's (twin.services.policy), applied by the gate."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2

from twin.engine.requests import request_digest
from twin.engine.supervisor import RunFailure, RunStateError
from twin.generated.dcc.v1 import dcc_pb2, dcc_pb2_grpc
from twin.model.config import TwinInputError
from twin.model.ops.validation import CommandConflict, OperationStateConflict, UnknownOperation
from twin.services.anomaly import AnomalyDetector, QuarantineEntry, entry_number
from twin.services.convert import ts
from twin.services.dcc import (
    DccCore,
    DccEngine,
    DccError,
    DeviceAlert,
    PositionAhead,
    PositionExpired,
    ResponseStatus,
    ServiceRequest,
    ServiceResponse,
    StreamBehind,
    alert_kinds,
)
from twin.services.dcc.core import YIELD_EVERY
from twin.services.errors import ApiError, conflict, from_dcc, invalid
from twin.services.identity import current_identity
from twin.services.pagination import next_page_token, page_of
from twin.services.signing import SignatureChecker
from twin.services.streams import StreamLimits, ahead, behind, expired
from twin.services.subscribers import Subscribers

log = logging.getLogger(__name__)

QUARANTINE_PAGE, MAX_QUARANTINE_PAGE = 100, 1000
# Requests in one SubmitServiceRequests batch: 10,000 small reads are about 0.7 MB, well inside
# the 4 MiB message limit, and enough that a batch's fixed cost is a small share of its work.
MAX_BATCH = 10_000
QUARANTINE_PAGE_BYTES = 2 * 1024 * 1024  # half the 4 MiB message limit
_STATUS = {ResponseStatus.COMPLETED: dcc_pb2.RESPONSE_STATUS_COMPLETED,
           ResponseStatus.ACKNOWLEDGED: dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED,
           ResponseStatus.FAILED: dcc_pb2.RESPONSE_STATUS_FAILED}


class DccServicer(dcc_pb2_grpc.DccServiceServicer):
    """`supervisor` is the engine (see twin.services.dcc.DccEngine), `server` the ApiServer (its
    user store names the senders of released requests); `core` replaces the DCC logic built
    from them (an API replica's)."""

    def __init__(self, supervisor: DccEngine, server: Any, *, anomaly: AnomalyDetector | None = None,
                 signatures: SignatureChecker | None = None, limits: StreamLimits | None = None,
                 core: DccCore | None = None):
        self.limits = limits or StreamLimits()
        self.core = core or DccCore(supervisor, users=lambda: server.users.users(), digest=grpc_digest,
                                    anomaly=anomaly, signatures=signatures, responses_kept=self.limits.responses_kept)
        # The StreamAlerts and StreamResponses calls open now, and how far behind (metrics).
        self.alert_subscribers = Subscribers()
        self.response_subscribers = Subscribers()

    @property
    def anomaly(self) -> AnomalyDetector:
        return self.core.anomaly

    @property
    def alert_streams(self) -> int:
        """StreamAlerts calls open now (the DUIS front door's followers are not calls)."""
        return self.alert_subscribers.open

    @property
    def response_streams(self) -> int:
        """StreamResponses calls open now."""
        return self.response_subscribers.open

    def on_tick(self, summary: Any) -> None:
        """On the server loop after each tick."""
        self.core.on_tick(summary.tick)

    async def SubmitServiceRequest(self, request, context):
        try:
            resp = await self.core.submit(current_identity(), service_request(request))
        except DccError as e:
            raise from_dcc(e) from None
        return dcc_pb2.SubmitServiceRequestResponse(response=response_message(resp))

    async def SubmitServiceRequests(self, request_iterator, context):
        """Batches of Service Requests, each answered in turn with one result per request: its
        response (status OK) or the status SubmitServiceRequest would have refused it with, its
        BadRequest field named in the batch ("requests[3].target"). A refused request never ends
        the stream; a batch of more than MAX_BATCH requests does (INVALID_ARGUMENT naming
        requests), as anything wrong with the call itself does."""
        identity = current_identity()
        batch = 0
        async for message in request_iterator:
            batch += 1
            if len(message.requests) > MAX_BATCH:
                raise invalid("requests", f"batch {batch} holds {len(message.requests):,} requests; at most "
                                          f"{MAX_BATCH:,} a batch")
            outcomes: list[ServiceResponse | Exception | None] = [None] * len(message.requests)
            parsed: list[ServiceRequest] = []
            where: list[int] = []
            for i, r in enumerate(message.requests):
                try:
                    parsed.append(service_request(r))
                    where.append(i)
                except ApiError as e:
                    outcomes[i] = e
            for i, outcome in zip(where, await self.core.submit_many(identity, parsed), strict=True):
                outcomes[i] = outcome
            answer = dcc_pb2.SubmitServiceRequestsResponse(batch=batch)
            add = answer.results.add
            stamps: dict[Any, Any] = {}
            for i, outcome in enumerate(outcomes):
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # (a big batch never holds the loop for long)
                _fill_result(add(), i, outcome, stamps)
            yield answer

    async def StreamResponses(self, request, context):
        """The caller's deferred responses in position order, from `start_after_position` if set
        (else from now). Ends RESOURCE_EXHAUSTED (resume_after_position) once a response
        produced after it began waits undelivered longer than `response_delivery_s`."""
        log = self.core.responses.of(current_identity().user_id)
        after = request.start_after_position if request.HasField("start_after_position") else None
        try:
            cursor = log.start(after)
            with self.response_subscribers.subscribe() as sub:
                async with aclosing(log.follow(cursor, delivery_s=self.limits.response_delivery_s,
                                               subscriber=sub)) as responses:
                    async for resp in responses:
                        yield response_message(resp)
        except DccError as e:
            raise _stream_error(e) from None

    async def StreamAlerts(self, request, context):
        """The alerts the caller may see and asked for, in position order: from the alert log
        after `start_after_position` if set (replayed, then live), else from the next tick. Ends
        RESOURCE_EXHAUSTED with the position to resume after if an alert sent after it began
        waits undelivered longer than `alert_delivery_s`; OUT_OF_RANGE with the oldest allowed
        for a position before the retained alerts."""
        after = request.start_after_position if request.HasField("start_after_position") else None
        try:
            reader = self.core.alerts.start(current_identity(), alert_kinds(request.kinds), after)
            with self.alert_subscribers.subscribe() as sub:
                async with aclosing(self.core.alerts.follow(reader, delivery_s=self.limits.alert_delivery_s,
                                                            subscriber=sub)) as alerts:
                    async for alert in alerts:
                        yield alert_message(alert)
        except DccError as e:
            raise _stream_error(e) from None

    async def ListQuarantinedRequests(self, request, context):
        page = page_of(request, default_size=QUARANTINE_PAGE, max_size=MAX_QUARANTINE_PAGE)
        try:
            entries = self.core.quarantined(current_identity(), request.user_id, page.offset, page.size + 1)
        except DccError as e:
            raise from_dcc(e) from None
        out: list[dcc_pb2.QuarantinedRequest] = []
        used = 0
        for entry in entries[:page.size]:
            msg = quarantined_message(entry)
            # A request's parameters may be up to 64 KiB: a page stops short of its byte budget
            # (AIP-158 lets a page hold fewer than page_size), so it always fits a message.
            if out and used + msg.ByteSize() > QUARANTINE_PAGE_BYTES:
                break
            out.append(msg)
            used += msg.ByteSize()
        more = entries[len(out)] if len(entries) > len(out) else None
        return dcc_pb2.ListQuarantinedRequestsResponse(
            requests=out, next_page_token=next_page_token(request, entry_number(more.id) if more is not None else None))

    async def ReleaseQuarantinedRequest(self, request, context):
        try:
            resp = await self.core.release(request.id)
        except DccError as e:
            raise from_dcc(e) from None
        return dcc_pb2.SubmitServiceRequestResponse(response=response_message(resp))

    async def DeleteQuarantinedRequest(self, request, context):
        try:
            return quarantined_message(self.core.delete(request.id))
        except DccError as e:
            raise from_dcc(e) from None


def _fill_result(out: dcc_pb2.ServiceRequestResult, index: int, outcome: ServiceResponse | Exception | None,
                 stamps: dict[Any, Any]) -> None:
    """One request's result in a batch, written into `out`: OK with its response, or its
    refusal's status with the field at fault named by its place in the batch (AIP-193 field
    paths, "requests[3].target")."""
    if isinstance(outcome, ServiceResponse):
        out.status.SetInParent()  # code 0: OK
        fill_response(out.response, outcome, stamps)
        return
    err = refusal(outcome)
    if err.field:
        err.field = f"requests[{index}].{err.field}"
    out.status.CopyFrom(err.proto())


def refusal(e: Exception | None) -> ApiError:
    """The status of one request of a batch that did not complete: what the unary call would have
    ended with (the server's gate maps the engine's own exceptions for a unary call the same way)."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, DccError):
        return from_dcc(e)
    if isinstance(e, UnknownOperation):
        return ApiError(grpc.StatusCode.NOT_FOUND, str(e), field=e.field)
    if isinstance(e, OperationStateConflict | CommandConflict):
        return conflict(e.field, str(e))
    if isinstance(e, TwinInputError):
        return invalid(e.field, e.reason)
    if isinstance(e, RunStateError):
        return conflict("run", str(e))
    if isinstance(e, RunFailure):  # the run's own fault (storage, a shard), not the caller's
        return ApiError(grpc.StatusCode.UNAVAILABLE, str(e))
    # A fault of the twin's own, not of the request: said so, and logged with its trace.
    log.error("a request of a SubmitServiceRequests batch failed", exc_info=e)
    return ApiError(grpc.StatusCode.INTERNAL, f"the twin failed on this request: {type(e).__name__}")


def _stream_error(e: DccError) -> ApiError:
    """A stream's end: where to resume, in ErrorInfo, for a resume point or subscriber out of step."""
    if isinstance(e, PositionExpired):
        return expired(e.field, e.requested, e.oldest, e.what)
    if isinstance(e, PositionAhead):
        return ahead(e.field, e.requested, e.newest, e.what)
    if isinstance(e, StreamBehind):
        return behind(e.what, e.key, e.resume_after, e.waited_s)
    return from_dcc(e)


def service_request(request: dcc_pb2.SubmitServiceRequestRequest) -> ServiceRequest:
    """The wire request as the DCC's plain ServiceRequest. INVALID_ARGUMENT naming parameters if
    they hold a value JSON cannot carry (NaN, infinity), response_deadline if it is not a valid
    non-negative Duration (its range is the DCC's check)."""
    deadline_s = None
    if request.HasField("response_deadline"):
        d = request.response_deadline
        if d.seconds < 0 or not 0 <= d.nanos < 1_000_000_000:
            raise invalid("response_deadline", "a non-negative duration (seconds from 0, nanos from 0 to 999,999,999)")
        deadline_s = d.seconds + d.nanos / 1e9
    params = None
    if request.HasField("parameters"):
        try:
            params = json_format.MessageToDict(request.parameters)
        except ValueError as e:
            raise invalid("parameters", str(e)) from None
    return ServiceRequest(srv=request.srv, target=request.target, request_id=request.request_id, parameters=params,
                          parameters_bytes=request.parameters.ByteSize(), signature=request.signature,
                          issued_at_ms=request.issued_at_ms, deadline_s=deadline_s)


def grpc_digest(request: ServiceRequest) -> str:
    """What a Service Request asks for (SRV, premises, parameters), for telling a retry from an id
    reused: the digest of the parameters' deterministic protobuf encoding, as the ids journaled
    by earlier runs were recorded (a request rebuilt from its quarantine copy has the same)."""
    if not request.parameters:  # (an empty Struct encodes as no bytes)
        return request_digest(request.srv, request.target, b"")
    st = struct_pb2.Struct()
    st.update(request.parameters)
    return request_digest(request.srv, request.target, st.SerializeToString(deterministic=True))


def response_message(r: ServiceResponse) -> dcc_pb2.ServiceResponse:
    msg = dcc_pb2.ServiceResponse()
    fill_response(msg, r)
    return msg


def fill_response(msg: dcc_pb2.ServiceResponse, r: ServiceResponse, stamps: dict[Any, Any] | None = None) -> None:
    """Write the wire response of `r` into the empty `msg` (in place: a batch's answers are
    written straight into the batch message, not built and copied in). `stamps` (a dict the
    caller keeps for a batch) reuses the Timestamp and Duration messages of times and latencies
    already converted: the reads of a batch share a few."""
    msg.request_id, msg.srv, msg.target, msg.csp = r.request_id, r.srv, r.target, r.csp
    msg.status = _STATUS[r.status]
    if r.detail:
        msg.detail = r.detail
    if r.operation:
        msg.operation = r.operation
    if r.position:
        msg.position = r.position
    stamp = stamps.get(r.time) if stamps is not None else None
    if stamp is None:
        stamp = ts(r.time)
        if stamps is not None:
            stamps[r.time] = stamp
    msg.time.CopyFrom(stamp)
    msg.result.update(r.result)  # plain numbers, strings, bools, lists and dicts: the model rounds to Python floats
    if not r.result:
        msg.result.SetInParent()  # (present, empty, as for any response)
    if r.latency_s is not None:
        latency = stamps.get(r.latency_s) if stamps is not None else None
        if latency is None:
            latency = duration_pb2.Duration()
            latency.FromTimedelta(timedelta(seconds=r.latency_s))
            if stamps is not None:
                stamps[r.latency_s] = latency
        msg.latency.CopyFrom(latency)


def alert_message(a: DeviceAlert) -> dcc_pb2.DeviceAlert:
    return dcc_pb2.DeviceAlert(kind=a.kind, hub=a.hub, area_id=a.area_id, csp=a.csp, code=a.code, time=ts(a.time),
                               position=a.position)


def quarantined_message(e: QuarantineEntry) -> dcc_pb2.QuarantinedRequest:
    return dcc_pb2.QuarantinedRequest(id=e.id, user_id=e.user_id, srv=e.srv, request_json=json.dumps(e.request),
                                      count=e.count, threshold=e.threshold,
                                      quarantined_at=ts(datetime.fromtimestamp(e.quarantined_at, UTC)))
