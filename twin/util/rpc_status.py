"""google.rpc error details and Any-packed messages (AIP-193, AIP-151): reading the field
violations of a BadRequest and the reason of an ErrorInfo from a failed gRPC call, and packing a
message into a google.protobuf.Any. Layer-free: the Python client, the dashboard and the services
all read and pack details the same way."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def pack_any(msg: Message) -> any_pb2.Any:
    """`msg` packed into a google.protobuf.Any (an error detail, an Operation's metadata or response)."""
    a = any_pb2.Any()
    a.Pack(msg)
    return a


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
