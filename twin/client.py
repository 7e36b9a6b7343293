"""A small Python client for the twin's gRPC API: read a hub, submit a Service Request (signed
when critical), follow an Operation, subscribe to alerts.

    from twin.client import TwinClient
    with TwinClient("127.0.0.1:50051", token=TOKEN) as c:
        hub = c.list_hubs("region=South AND wan=3G", page_size=1).hubs[0]
        print(c.submit("4.1.1", hub.name).response.result)
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2

from twin.csp.v1 import csp_pb2, csp_pb2_grpc
from twin.dcc.v1 import dcc_pb2, dcc_pb2_grpc
from twin.fleet.v1 import fleet_pb2, fleet_pb2_grpc


def field_violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs of a failed call's google.rpc.BadRequest details."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(err)
    out: list[tuple[str, str]] = []
    for d in st.details if st is not None else ():
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out.extend((v.field, v.description) for v in br.field_violations)
    return out


class TwinClient:
    def __init__(self, address: str = "127.0.0.1:50051", *, token: str, ca_cert: Path | None = None,
                 private_key: Path | None = None, user_id: str | None = None, timeout_s: float = 30.0):
        if ca_cert is None:
            self.channel = grpc.insecure_channel(address)
        else:
            self.channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_cert.read_bytes()))
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

    def create_event(self, at: str = "", **event: Any) -> operations_pb2.Operation:
        """create_event(power_outage=fleet_pb2.PowerOutage(area="12", duration_min=60), at="1h")."""
        return self.fleet.CreateEvent(fleet_pb2.CreateEventRequest(at=at, **event), **self._kw())

    def step(self, count: int = 1) -> fleet_pb2.Clock:
        return self.fleet.StepClock(fleet_pb2.StepClockRequest(count=count), metadata=self.metadata)

    # service requests
    def submit(self, srv: str, target: str, parameters: dict[str, Any] | None = None, *,
               request_id: str | None = None, sign: bool | None = None) -> dcc_pb2.SubmitServiceRequestResponse:
        req = dcc_pb2.SubmitServiceRequestRequest(srv=srv, target=target, request_id=request_id or uuid.uuid4().hex,
                                                  issued_at_ms=int(time.time() * 1000))
        if parameters:
            req.parameters.update(parameters)
        if sign or (sign is None and self.private_key is not None):
            from twin.services.signing import sign as sign_bytes

            if self.private_key is None or self.user_id is None:
                raise ValueError("signing needs private_key and user_id")
            req.signature = sign_bytes(self.private_key, user_id=self.user_id, srv=srv, target=target,
                                       request_id=req.request_id, issued_at_ms=req.issued_at_ms,
                                       payload=dict(parameters or {}))
        return self.dcc.SubmitServiceRequest(req, **self._kw())

    def responses(self) -> Iterator[dcc_pb2.ServiceResponse]:
        return self.dcc.StreamResponses(dcc_pb2.StreamResponsesRequest(), metadata=self.metadata)

    def alerts(self, kinds: list[str] | None = None) -> Iterator[dcc_pb2.DeviceAlert]:
        return self.dcc.StreamAlerts(dcc_pb2.StreamAlertsRequest(kinds=kinds or []), metadata=self.metadata)

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

    @staticmethod
    def progress(op: operations_pb2.Operation) -> fleet_pb2.OperationMetadata:
        md = fleet_pb2.OperationMetadata()
        op.metadata.Unpack(md)
        return md

    # CSPs
    def network_state(self, region: str) -> csp_pb2.NetworkState:
        return self.csp.GetNetworkState(csp_pb2.GetNetworkStateRequest(name=f"regions/{region.lower()}"), **self._kw())
