"""How the DCC refuses: errors as plain data (a status name, a message, the field at fault), which
each front door translates to its own wire (gRPC statuses with google.rpc details; DUIS response
codes). Nothing here imports gRPC."""

from __future__ import annotations

from enum import Enum

from twin.engine.requests import RequestIdError


class Code(Enum):
    """The AIP-193 status of a refusal (names as google.rpc.Code spells them)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"


class DccError(Exception):
    """A refused request: nothing was applied. `field` names the request field at fault (a
    BadRequest field violation), `quota` the quarantine entry or quota it ran into,
    `precondition` the subject whose state forbids it."""

    def __init__(self, code: Code, message: str, *, field: str = "", quota: str = "", precondition: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.quota = quota
        self.precondition = precondition


class PositionExpired(DccError):
    """A stream's resume point is older than what is kept; `oldest` is the oldest allowed."""

    def __init__(self, field: str, requested: int, oldest: int, what: str):
        super().__init__(Code.OUT_OF_RANGE, f"{field}={requested} is older than the {what} kept", field=field)
        self.requested, self.oldest, self.what = requested, oldest, what


class PositionAhead(DccError):
    """A stream's resume point is beyond the newest item; `newest` is the newest."""

    def __init__(self, field: str, requested: int, newest: int, what: str):
        super().__init__(Code.OUT_OF_RANGE, f"{field}={requested} is beyond the newest of the {what}", field=field)
        self.requested, self.newest, self.what = requested, newest, what


class StreamBehind(DccError):
    """A subscriber left an item undelivered longer than `waited_s`; it resumes after
    `resume_after` (the last one delivered), under the key `key`."""

    def __init__(self, what: str, key: str, resume_after: int, waited_s: float):
        super().__init__(Code.RESOURCE_EXHAUSTED, f"this {what} stream fell behind")
        self.what, self.key, self.resume_after, self.waited_s = what, key, resume_after, waited_s


def invalid(field: str, message: str) -> DccError:
    return DccError(Code.INVALID_ARGUMENT, f"{field}: {message}", field=field)


def denied(message: str, field: str = "") -> DccError:
    return DccError(Code.PERMISSION_DENIED, message, field=field)


def conflict(subject: str, message: str) -> DccError:
    """FAILED_PRECONDITION: well formed, but the state of `subject` does not allow it now."""
    return DccError(Code.FAILED_PRECONDITION, message, precondition=subject)


def not_found(field: str, message: str) -> DccError:
    return DccError(Code.NOT_FOUND, message, field=field)


def quarantined(entry_id: str, why: str) -> DccError:
    """RESOURCE_EXHAUSTED for a request held in quarantine as `entry_id`."""
    return DccError(Code.RESOURCE_EXHAUSTED,
                    f"quarantined as {entry_id}: {why}; an operator may release or delete it", quota=entry_id)


def request_id_refusal(e: RequestIdError) -> DccError:
    """The status of a request id that may not be used (twin.engine.requests), naming request_id:
    malformed INVALID_ARGUMENT; a DUIS counter not above the last one FAILED_PRECONDITION (DUIS
    refuses it); reused for a different request ALREADY_EXISTS; its first request still being
    processed ABORTED (retry shortly); held in quarantine RESOURCE_EXHAUSTED naming the entry."""
    if e.kind == "held":
        return quarantined(e.held, e.message)
    code = {"invalid": Code.INVALID_ARGUMENT, "stale": Code.FAILED_PRECONDITION,
            "reused": Code.ALREADY_EXISTS, "in_progress": Code.ABORTED}[e.kind]
    return DccError(code, f"request_id: {e.message}", field="request_id",
                    precondition="request_id" if e.kind == "stale" else "")
