"""Reading the google.rpc error details of a failed gRPC call (AIP-193): the field violations of a
BadRequest and the reason of an ErrorInfo. Layer-free: the Python client, the dashboard and the
services' own error helpers all read details the same way."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs of a failed call's google.rpc.BadRequest details; [] if it has none."""
    st = rpc_status.from_call(err)
    out: list[tuple[str, str]] = []
    for d in st.details if st is not None else ():
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out.extend((v.field, v.description) for v in br.field_violations)
    return out


def error_info(err: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """(reason, metadata) of a failed call's google.rpc.ErrorInfo; ('', {}) if it has none."""
    st = rpc_status.from_call(err)
    for d in st.details if st is not None else ():
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            return info.reason, dict(info.metadata)
    return "", {}
