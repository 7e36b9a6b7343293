"""A small Python client for the twin's gRPC API: read a hub, submit a Service Request (signed
when critical), follow an Operation, subscribe to alerts, responses and tick summaries (the
`follow_*` iterators resume a stream the server ended for falling behind, from the last message
received, so nothing is missed and nothing comes twice).

    from twin.client import TwinClient
    with TwinClient("127.0.0.1:50051", token=TOKEN) as c:
        hub = c.list_hubs("region=South AND wan=3G", page_size=1).hubs[0]
        print(c.submit("4.1.1", hub.name).response.result)
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message

from twin.generated.csp.v1 import csp_pb2, csp_pb2_grpc
from twin.generated.dcc.v1 import dcc_pb2, dcc_pb2_grpc
from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc

# The error-details readers, re-exported: callers of the client read failed calls with them.
from twin.util.rpc_status import error_info as error_info
from twin.util.rpc_status import field_violations as field_violations

# What ends a stream that the client should resume: the server's "fell behind" (resume after the
# last message received) and "the run went back" (resume where the server says).
STREAM_BEHIND, RUN_REWOUND = "STREAM_BEHIND", "RUN_REWOUND"


class TwinClient:
    def __init__(self, address: str = "127.0.0.1:50051", *, token: str, ca_cert: Path | None = None,
                 private_key: Path | None = None, user_id: str | None = None, timeout_s: float = 30.0,
                 channel_options: list[tuple[str, Any]] | None = None):
        if ca_cert is None:
            self.channel = grpc.insecure_channel(address, options=channel_options)
        else:
            self.channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_cert.read_bytes()),
                                               options=channel_options)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout_s = timeout_s
        self.private_key = private_key.read_bytes() if private_key else None
        self.user_id = user_id
        self.fleet = fleet_pb2_grpc.FleetServiceStub(self.channel)
        self.dcc = dcc_pb2_grpc.DccServiceStub(self.channel)
        self.csp = csp_pb2_grpc.CspServiceStub(self.channel)
        self.operations = operations_pb2_grpc.OperationsStub(self.channel)

    def __enter__(self) -> TwinClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def _kw(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "timeout": self.timeout_s}

    # hubs and fleet
    def get_hub(self, name: str) -> fleet_pb2.Hub:
        return self.fleet.GetHub(fleet_pb2.GetHubRequest(name=name), **self._kw())

    def list_hubs(self, filter: str = "", page_size: int = 50, page_token: str = "") -> fleet_pb2.ListHubsResponse:
        return self.fleet.ListHubs(fleet_pb2.ListHubsRequest(filter=filter, page_size=page_size,
                                                             page_token=page_token), **self._kw())

    def get_fleet_catalog(self, *, timeout_s: float | None = None) -> fleet_pb2.FleetCatalog:
        """The API's reference data: regions, areas, WAN technologies, suppliers, device models
        with their firmware versions, alert kinds (names only; any signed-in caller). `timeout_s`
        overrides the client's deadline for this call."""
        return self.fleet.GetFleetCatalog(fleet_pb2.GetFleetCatalogRequest(), metadata=self.metadata,
                                          timeout=self.timeout_s if timeout_s is None else timeout_s)

    def create_event(self, at: str = "", **event: Any) -> operations_pb2.Operation:
        """create_event(power_outage=fleet_pb2.PowerOutage(area="12", duration_min=60), at="1h")."""
        return self.fleet.CreateEvent(fleet_pb2.CreateEventRequest(at=at, **event), **self._kw())

    def step(self, count: int = 1) -> fleet_pb2.Clock:
        return self.fleet.StepClock(fleet_pb2.StepClockRequest(count=count), metadata=self.metadata)

    # service requests
    def submit(self, srv: str, target: str, parameters: dict[str, Any] | None = None, *,
               request_id: str | None = None, sign: bool | None = None,
               response_deadline_s: float | None = None) -> dcc_pb2.SubmitServiceRequestResponse:
        """Send a Service Request. `response_deadline_s`: how long, in simulated seconds, to wait
        for the answer (unset: the request's Target Response Time); a read the network answers
        later is acknowledged and its response follows on `follow_responses`."""
        req = self.service_request(srv, target, parameters, request_id=request_id, sign=sign,
                                   response_deadline_s=response_deadline_s)
        return self.dcc.SubmitServiceRequest(req, **self._kw())

    def submit_many(self, requests: Iterable[dcc_pb2.SubmitServiceRequestRequest], *, batch_size: int = 1000,
                    timeout_s: float | None = None) -> Iterator[dcc_pb2.ServiceRequestResult]:
        """Send many Service Requests on one SubmitServiceRequests stream, `batch_size` to a
        message (at most 10,000), and yield one result per request in the order given: its
        `status` (code 0: OK, with `response`; else the refusal, its BadRequest field named
        "requests[i].<field>" with i its place in its batch). Build the requests with
        `service_request` (signed when critical). Requests are read from `requests` as the
        stream sends them, so a generator of millions is fine; results come as each batch is
        answered. A status that ends the whole stream (unknown caller, an operator's identity)
        is raised as grpc.RpcError. `timeout_s` bounds the whole stream (default: none)."""
        if not 1 <= batch_size <= 10_000:
            raise ValueError(f"batch_size must be 1 to 10,000, got {batch_size}")
        it = iter(requests)
        batches = (dcc_pb2.SubmitServiceRequestsRequest(requests=chunk)
                   for chunk in iter(lambda: list(itertools.islice(it, batch_size)), []))
        for answer in self.dcc.SubmitServiceRequests(batches, metadata=self.metadata, timeout=timeout_s):
            yield from answer.results

    def service_request(self, srv: str, target: str, parameters: dict[str, Any] | None = None, *,
                        request_id: str | None = None, sign: bool | None = None,
                        response_deadline_s: float | None = None) -> dcc_pb2.SubmitServiceRequestRequest:
        """A Service Request message as `submit` sends it (a fresh UUID as its id unless given;
        signed if `sign`, or by default when the client holds a private key), for `submit_many`."""
        req = dcc_pb2.SubmitServiceRequestRequest(srv=srv, target=target, request_id=request_id or uuid.uuid4().hex,
                                                  issued_at_ms=int(time.time() * 1000))
        if response_deadline_s is not None:
            req.response_deadline.FromTimedelta(timedelta(seconds=response_deadline_s))
        if parameters:
            req.parameters.update(parameters)
        if sign or (sign is None and self.private_key is not None):
            from twin.services.signing import sign as sign_bytes

            if self.private_key is None or self.user_id is None:
                raise ValueError("signing needs private_key and user_id")
            req.signature = sign_bytes(self.private_key, user_id=self.user_id, srv=srv, target=target,
                                       request_id=req.request_id, issued_at_ms=req.issued_at_ms,
                                       payload=dict(parameters or {}))
        return req

    def responses(self, start_after_position: int | None = None) -> Iterator[dcc_pb2.ServiceResponse]:
        """One StreamResponses call (from now, or after a position)."""
        return self.dcc.StreamResponses(dcc_pb2.StreamResponsesRequest(start_after_position=start_after_position),
                                        metadata=self.metadata)

    def alerts(self, kinds: list[str] | None = None,
               start_after_position: int | None = None) -> Iterator[dcc_pb2.DeviceAlert]:
        """One StreamAlerts call (from now, or after a position: 0 for every retained alert)."""
        return self.dcc.StreamAlerts(dcc_pb2.StreamAlertsRequest(kinds=kinds or [],
                                                                 start_after_position=start_after_position),
                                     metadata=self.metadata)

    def watch_fleet(self, *, start_after_tick: int | None = None, backlog: int = 0,
                    latest: bool = False) -> Iterator[fleet_pb2.TickSummary]:
        """One WatchFleet call: every tick (from the newest `backlog`, or after a tick), or with
        `latest` only the newest, each with skipped_ticks."""
        mode = fleet_pb2.WATCH_MODE_LATEST if latest else fleet_pb2.WATCH_MODE_EVERY_TICK
        return self.fleet.WatchFleet(fleet_pb2.WatchFleetRequest(backlog=backlog, start_after_tick=start_after_tick,
                                                                 mode=mode), metadata=self.metadata)

    def follow_alerts(self, kinds: list[str] | None = None, start_after_position: int | None = None,
                      *, resumes: list[int] | None = None) -> Iterator[dcc_pb2.DeviceAlert]:
        """Alerts without end: a stream the server ends for falling behind is resumed after the
        last alert received (each resume point is appended to `resumes` if given). Any other
        ending (OUT_OF_RANGE: alerts past retention; UNAVAILABLE...) is raised."""
        return _follow(lambda last: self.alerts(kinds, last), start_after_position, "resume_after_position",
                       lambda a: a.position, resumes)

    def follow_responses(self, start_after_position: int | None = None, *,
                         resumes: list[int] | None = None) -> Iterator[dcc_pb2.ServiceResponse]:
        """Deferred responses without end, resumed like follow_alerts."""
        return _follow(self.responses, start_after_position, "resume_after_position", lambda r: r.position, resumes)

    def follow_fleet(self, start_after_tick: int | None = None, *, backlog: int = 0,
                     resumes: list[int] | None = None) -> Iterator[fleet_pb2.TickSummary]:
        """Every tick summary in order without end, resumed like follow_alerts; after a rewind
        the ticks start again from the rewound tick (a tick not above the previous one)."""
        return _follow(lambda last: self.watch_fleet(start_after_tick=last, backlog=backlog), start_after_tick,
                       "resume_after_tick", lambda s: s.tick, resumes)

    # operations
    def get_operation(self, name: str) -> operations_pb2.Operation:
        return self.operations.GetOperation(operations_pb2.GetOperationRequest(name=name), **self._kw())

    def wait_operation(self, name: str, timeout_s: float = 60.0) -> operations_pb2.Operation:
        """Follow an Operation until it is done (or the timeout passes)."""
        end = time.monotonic() + timeout_s
        for _ in itertools.count():
            left = end - time.monotonic()
            op = self.operations.WaitOperation(
                operations_pb2.WaitOperationRequest(name=name, timeout=duration_pb2.Duration(seconds=int(min(left, 30)) + 1)),
                metadata=self.metadata, timeout=min(left, 30) + 5)
            if op.done or time.monotonic() >= end:
                return op
        raise AssertionError("unreachable")

    def pause_operation(self, name: str) -> operations_pb2.Operation:
        """PauseOperation: the operation as it is after (unchanged if already paused)."""
        return self.fleet.PauseOperation(fleet_pb2.PauseOperationRequest(name=name), **self._kw())

    def resume_operation(self, name: str) -> operations_pb2.Operation:
        """ResumeOperation: the operation as it is after (unchanged if already running)."""
        return self.fleet.ResumeOperation(fleet_pb2.ResumeOperationRequest(name=name), **self._kw())

    def cancel_operation(self, name: str) -> operations_pb2.Operation:
        """CancelOperation, then the operation as it is after (a pending one is cancelled at once)."""
        self.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name), **self._kw())
        return self.get_operation(name)

    @staticmethod
    def progress(op: operations_pb2.Operation) -> fleet_pb2.OperationMetadata:
        """An Operation's typed metadata (state, allowed actions, the progress of its kind)."""
        md = fleet_pb2.OperationMetadata()
        op.metadata.Unpack(md)
        return md

    @staticmethod
    def kind_progress(op: operations_pb2.Operation) -> Message | None:
        """The progress message of an Operation's kind (FirmwareRolloutProgress, ...), None if unset."""
        md = TwinClient.progress(op)
        which = md.WhichOneof("progress")
        return getattr(md, which) if which else None

    @staticmethod
    def state_name(op: operations_pb2.Operation) -> str:
        """An Operation's state by name: PENDING, RUNNING, PAUSED, HALTED, CANCELLED, DONE or FAILED."""
        return fleet_pb2.OperationState.Name(TwinClient.progress(op).state).removeprefix("OPERATION_STATE_")

    # CSPs
    def network_state(self, region: str) -> csp_pb2.NetworkState:
        return self.csp.GetNetworkState(csp_pb2.GetNetworkStateRequest(name=f"regions/{region.lower()}"), **self._kw())

    def load(self, region: str, ticks: int = 48) -> csp_pb2.Load:
        """A region's recent ticks, oldest first: messages by type, and (capacity model on) each
        link's capacity, utilisation and backlog and each traffic class's latency and service."""
        return self.csp.GetLoad(csp_pb2.GetLoadRequest(name=f"regions/{region.lower()}", ticks=ticks), **self._kw())


T = TypeVar("T")


def _follow(open_stream: Callable[[int | None], Iterable[T]], start_after: int | None, key: str,
            place: Callable[[T], int], resumes: list[int] | None) -> Iterator[T]:
    """Read a resumable server stream without end: where the server ends it for falling behind
    (or for a rewind), open it again after the last item received; raise any other ending."""
    last = start_after
    while True:
        try:
            for item in open_stream(last):
                last = place(item)
                yield item
            return
        except grpc.RpcError as e:
            last = _resume_point(e, key, last)
            if resumes is not None:
                resumes.append(last)


def _resume_point(err: grpc.RpcError, key: str, last: int | None) -> int:
    """Where to resume a stream the server ended, or raise `err` if it is not to be resumed."""
    reason, md = error_info(err)
    if reason == RUN_REWOUND and key in md:
        return int(md[key])
    if reason == STREAM_BEHIND and key in md:
        if last is not None and int(md[key]) != last:  # the server's count and ours must agree
            raise RuntimeError(f"the server says resume after {md[key]}, the last received was {last}") from err
        return int(md[key])
    raise err
