"""How a server stream ends when it cannot go on in order: a status with google.rpc.ErrorInfo
naming where to resume, so a subscriber never loses a message without knowing.

- RESOURCE_EXHAUSTED, reason STREAM_BEHIND: the subscriber fell behind: a message waited longer
  than the stream's delivery window (the per-stream buffer is used up; AIP-193: retry, here
  resume, is right). Metadata `resume_after_position`
  (alerts, responses) or `resume_after_tick` (tick summaries): the last message delivered.
- ABORTED, reason RUN_REWOUND: the run went back behind the stream (a concurrency conflict with
  the reader, AIP-193); resume from the tick given.
- OUT_OF_RANGE, reason POSITION_EXPIRED or POSITION_AHEAD: the resume point is outside what the
  server keeps; metadata gives the range it can serve, and BadRequest names the field."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from twin.services.errors import ApiError
from twin.util.rpc_status import pack_any

DOMAIN = "twin"
STREAM_BEHIND = "STREAM_BEHIND"
RUN_REWOUND = "RUN_REWOUND"
POSITION_EXPIRED = "POSITION_EXPIRED"
POSITION_AHEAD = "POSITION_AHEAD"


@dataclass(frozen=True)
class StreamLimits:
    """How long a message may wait undelivered on a stream (wall seconds) before the stream is
    ended with the point to resume after. Only messages produced after the stream began count:
    a replay (a resumed stream) is never cut for being old, so every resume makes progress.

    - alert_delivery_s: the DCC retries a Device Alert for 300 s, then holds it as failed for
      re-delivery when the user reconnects (SECCo glossary "Device Alert", FACTS.md 3.5).
    - response_delivery_s: the same window for deferred Service Request responses [U].
    - watch_delivery_s: tick summaries on an every-tick WatchFleet stream [U]; a reader that
      wants only the newest uses WATCH_MODE_LATEST and is never cut.
    - responses_kept: deferred responses kept per user for resuming StreamResponses."""

    alert_delivery_s: float = 300.0
    response_delivery_s: float = 300.0
    watch_delivery_s: float = 60.0
    responses_kept: int = 10_000


class StreamEnd(ApiError):
    """An ApiError whose status carries ErrorInfo (reason and metadata) as well."""

    def __init__(self, code: grpc.StatusCode, message: str, *, reason: str, metadata: dict[str, object],
                 field: str = ""):
        super().__init__(code, message, field=field)
        self.reason = reason
        self.metadata = {k: str(v) for k, v in metadata.items()}

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        return [pack_any(info), *super().details()]


def behind(what: str, key: str, resume_after: int, waited_s: float) -> StreamEnd:
    """The stream fell behind: a message waited more than `waited_s` undelivered. Resume after
    `resume_after` (the last one delivered)."""
    return StreamEnd(grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"this {what} stream fell behind: a message waited more than {waited_s:g} s undelivered; "
                     "nothing is lost: resume with "
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
