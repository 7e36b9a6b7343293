"""Leaving a call with a status: the right gRPC code, a clear message, and google.rpc details
(BadRequest naming the offending field, QuotaFailure for quarantine)."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from twin.services.dcc.errors import DccError
from twin.util.rpc_status import field_violations, pack_any


class ApiError(Exception):
    """Raised by servicer helpers; the interceptor turns it into the call's status."""

    def __init__(self, code: grpc.StatusCode, message: str, *, field: str = "", quota: str = "",
                 retry_after_s: float | None = None, precondition: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.quota = quota
        self.retry_after_s = retry_after_s
        self.precondition = precondition  # the subject of a PreconditionFailure (FAILED_PRECONDITION)

    def status(self) -> grpc.Status:
        return rpc_status.to_status(self.proto())

    def proto(self) -> status_pb2.Status:
        """This error as a google.rpc.Status message (code, message, details)."""
        return status_pb2.Status(code=getattr(code_pb2, self.code.name), message=self.message, details=self.details())

    def details(self) -> list[any_pb2.Any]:
        """The google.rpc details of this error, packed."""
        details = []
        if self.field:
            br = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.message)])
            details.append(pack_any(br))
        if self.quota:
            qf = error_details_pb2.QuotaFailure(violations=[
                error_details_pb2.QuotaFailure.Violation(subject=self.quota, description=self.message)])
            details.append(pack_any(qf))
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromTimedelta(timedelta(seconds=self.retry_after_s))
            details.append(pack_any(error_details_pb2.RetryInfo(retry_delay=delay)))
        if self.precondition:
            pf = error_details_pb2.PreconditionFailure(violations=[error_details_pb2.PreconditionFailure.Violation(
                type="STATE", subject=self.precondition, description=self.message)])
            details.append(pack_any(pf))
        return details


def from_dcc(e: DccError) -> ApiError:
    """The status of a refusal by the DCC's logic (twin.services.dcc), code, field and all."""
    return ApiError(grpc.StatusCode[e.code.name], e.message, field=e.field, quota=e.quota, precondition=e.precondition)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}", field=field)


def denied(message: str, field: str = "") -> ApiError:
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, message, field=field)


def conflict(subject: str, message: str) -> ApiError:
    """FAILED_PRECONDITION: the request is well formed but the state of `subject` (an operation,
    the run, a caller's RequestID counter) does not allow it now (AIP-193)."""
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message, precondition=subject)


def not_found(field: str, message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message, field=field)


def quarantined(entry_id: str, why: str) -> ApiError:
    """RESOURCE_EXHAUSTED for a request held in quarantine as `entry_id` (the QuotaFailure subject)."""
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"quarantined as {entry_id}: {why}; an operator may release or delete it", quota=entry_id)


def overloaded(message: str, retry_after_s: float) -> ApiError:
    """RESOURCE_EXHAUSTED for a server too busy to take the call now, with a google.rpc.RetryInfo
    saying when to try again (AIP-193: the client should back off at least that long)."""
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_after_s=retry_after_s)


def retry_delay_s(err: grpc.aio.AioRpcError | grpc.RpcError) -> float | None:
    """The RetryInfo delay of a failed call, in seconds (None if it carries none)."""
    st = rpc_status.from_call(err)
    for d in st.details if st is not None else ():
        if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            d.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


def bad_request_fields(err: grpc.aio.AioRpcError | grpc.RpcError) -> list[str]:
    """Fields named in a call's BadRequest details (for clients and tests)."""
    return [f for f, _ in field_violations(err)]
