"""How a server stream ends when it cannot go on in order: a status with google.rpc.ErrorInfo
naming where to resume, so a subscriber never loses a message without knowing.

- RESOURCE_EXHAUSTED, reason STREAM_BEHIND: the subscriber fell behind its stream's buffer (a
  per-stream resource, AIP-193: retry, here resume, is right). Metadata `resume_after_position`
  (alerts, responses) or `resume_after_tick` (tick summaries): the last message delivered.
- ABORTED, reason RUN_REWOUND: the run went back behind the stream (a concurrency conflict with
  the reader, AIP-193); resume from the tick given.
- OUT_OF_RANGE, reason POSITION_EXPIRED or POSITION_AHEAD: the resume point is outside what the
  server keeps; metadata gives the range it can serve, and BadRequest names the field."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from twin.services.errors import ApiError, _pack

DOMAIN = "twin"
STREAM_BEHIND = "STREAM_BEHIND"
RUN_REWOUND = "RUN_REWOUND"
POSITION_EXPIRED = "POSITION_EXPIRED"
POSITION_AHEAD = "POSITION_AHEAD"


@dataclass(frozen=True)
class StreamLimits:
    """How far each kind of stream may fall behind before it is ended with a resume point.

    - alert_delivery_s: wall seconds an alert sent after the stream began may wait undelivered
      (the DCC retries a Device Alert for 300 s before it fails it for re-delivery on reconnect).
    - watch_buffer: tick summaries recorded since a WatchFleet stream began that may wait
      undelivered (below the supervisor's retained history, 1,344 ticks by default).
    - response_buffer / responses_kept: deferred responses produced since a StreamResponses
      stream began that may wait undelivered; responses kept per user for resuming."""

    alert_delivery_s: float = 300.0
    watch_buffer: int = 1_000
    response_buffer: int = 1_000
    responses_kept: int = 10_000


class StreamEnd(ApiError):
    """An ApiError whose status carries ErrorInfo (reason and metadata) as well."""

    def __init__(self, code: grpc.StatusCode, message: str, *, reason: str, metadata: dict[str, object],
                 field: str = ""):
        super().__init__(code, message, field=field)
        self.reason = reason
        self.metadata = {k: str(v) for k, v in metadata.items()}

    def status(self) -> grpc.Status:
        details = [_pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata))]
        if self.field:
            details.append(_pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.message)])))
        return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, self.code.name), message=self.message,
                                                      details=details))


def behind(what: str, key: str, resume_after: int, why: str) -> StreamEnd:
    """The stream fell behind its buffer: resume after `resume_after` (the last delivered)."""
    return StreamEnd(grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"this {what} stream fell behind: {why}; nothing is lost: resume with "
                     f"start_after_{key.removeprefix('resume_after_')}={resume_after} (the last one delivered)",
                     reason=STREAM_BEHIND, metadata={key: resume_after})


def expired(field: str, requested: int, oldest: int, what: str) -> StreamEnd:
    """`requested` is older than anything kept; the oldest resume point is `oldest`."""
    return StreamEnd(grpc.StatusCode.OUT_OF_RANGE,
                     f"{field}={requested} is older than the {what} kept; the oldest it may be is {oldest}",
                     reason=POSITION_EXPIRED, metadata={"requested": requested, f"oldest_{field}": oldest},
                     field=field)


def ahead(field: str, requested: int, newest: int, what: str) -> StreamEnd:
    return StreamEnd(grpc.StatusCode.OUT_OF_RANGE,
                     f"{field}={requested} is beyond the newest of the {what} ({newest})",
                     reason=POSITION_AHEAD, metadata={"requested": requested, f"newest_{field}": newest},
                     field=field)
