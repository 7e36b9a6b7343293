"""Request ids already seen, so a retry never applies twice (AIP-155; DUIS RequestID).

A request id is either a DUIS RequestID, `originator EUI:target EUI:counter` (EUIs written
`90-B3-D5-1F-30-01-00-00`, the counter a decimal unsigned 64-bit integer that must strictly increase
per originator, DUIS.md), or, if it holds no ':', an opaque AIP-155 id such as a UUID. An id with a
':' that is not a DUIS RequestID is refused rather than guessed at.

Per caller (user id):
- the same id again is a retry: it gets the first answer and nothing is applied again; the same id
  with a different request is refused (`RequestIdError.kind == "reused"`);
- a new DUIS id whose counter is not above the highest counter this caller has used from that
  originator is refused (`"stale"`), whether or not the old id is still remembered;
- an id whose first request is still being processed is refused for now (`"in_progress"`), and
  one whose request is held in quarantine is answered as it was (`"held"`, naming the entry);
- a request refused before it was accepted (bad input, quarantine deleted) leaves its id free to
  be retried, a DUIS one only while no later counter from its originator has been used.

Memory is bounded: the newest `max_ids` ids are remembered with at most `max_answer_bytes` of
their answers (oldest forgotten first; about 100 MB at the defaults), and for DUIS ids one integer
per (caller, originator) for ever, so an old DUIS id is refused by its counter
even once forgotten. Requests that change the fleet are journaled with their caller, id and
digest (`journal_entry`), and `load` rebuilds the ledger from the journal on resume."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_IDS = 100_000  # ids remembered; about 300 bytes each plus the answer kept [U]
MAX_ANSWER_BYTES = 64 * 2**20  # answers kept, in all; the oldest ids are forgotten first past it [U]
_EUI = r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}"
DUIS_REQUEST_ID = re.compile(rf"({_EUI}):({_EUI}):([0-9]{{1,20}})", re.ASCII)
MAX_COUNTER = 2**64 - 1


class RequestIdError(ValueError):
    """A request id that may not be used: kind is "invalid", "stale", "reused", "in_progress" or
    "held" (quarantined; `held` is the quarantine entry's id)."""

    def __init__(self, kind: str, message: str, held: str = ""):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.held = held


@dataclass(frozen=True)
class DuisRequestId:
    originator: str  # upper-case EUI-64
    target: str
    counter: int


def parse_request_id(request_id: str) -> DuisRequestId | None:
    """The DUIS parts of `request_id`, or None for an opaque id (no ':'). Raises RequestIdError
    ("invalid") for an id with a ':' that is not `originator EUI:target EUI:counter`."""
    if ":" not in request_id:
        return None
    m = DUIS_REQUEST_ID.fullmatch(request_id)
    if m is None:
        raise RequestIdError("invalid", "an id with ':' must be a DUIS RequestID, originator EUI:target EUI:counter "
                                        "(e.g. 90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-9A-BC:1); without ':' it is "
                                        "an opaque id such as a UUID")
    counter = int(m.group(3))
    if counter > MAX_COUNTER:
        raise RequestIdError("invalid", f"the counter {counter} does not fit an unsigned 64-bit integer")
    return DuisRequestId(m.group(1).upper(), m.group(2).upper(), counter)


def request_digest(*parts: str | bytes) -> str:
    """A digest of what a request asks for (not its id, time or signature), to tell a retry of the
    same request from the id reused for another."""
    h = hashlib.sha256()
    for part in parts:
        b = part.encode() if isinstance(part, str) else part
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()[:32]


@dataclass
class Seen:
    """What became of a request id: `state` is "pending", "held" (in quarantine), "done" or
    "failed"; a done request has its operation's name (if it made one) and, while this process
    holds it, its first answer; a held one its quarantine entry."""

    digest: str
    state: str = "pending"
    operation: str = ""
    answer: bytes = b""
    held: str = ""


class RequestLedger:
    """Request ids per caller (see the module docstring). Thread-safe."""

    def __init__(self, *, max_ids: int = MAX_IDS, max_answer_bytes: int = MAX_ANSWER_BYTES):
        if max_ids < 1:
            raise ValueError("max_ids must be at least 1")
        self.max_ids = max_ids
        self.max_answer_bytes = max_answer_bytes
        self._answer_bytes = 0
        self._lock = threading.Lock()
        self._ids: OrderedDict[tuple[str, str], Seen] = OrderedDict()
        self._counters: dict[tuple[str, str], int] = {}  # (user, originator EUI) -> highest counter used

    def claim(self, user: str, request_id: str, digest: str) -> Seen | None:
        """None if this is a new request, now claimed by the caller (who must `finish` or `fail`
        it); the first request's Seen (state "done") if this is a retry. Raises RequestIdError."""
        duis = parse_request_id(request_id)
        key = (user, request_id)
        with self._lock:
            seen = self._ids.get(key)
            if seen is not None and seen.state != "failed":
                if seen.digest != digest:
                    raise RequestIdError("reused", f"{request_id!r} was used already for a different request; "
                                                   "give each request its own id")
                if seen.state == "pending":
                    raise RequestIdError("in_progress", f"the first request with id {request_id!r} is still being "
                                                        "processed; retry it shortly")
                if seen.state == "held":
                    raise RequestIdError("held", f"request {request_id!r} is held in quarantine as {seen.held}; an "
                                                 "operator may release or delete it", held=seen.held)
                return seen
            if duis is not None:
                ckey = (user, duis.originator)
                last = self._counters.get(ckey, -1)
                # A new id must pass the last counter; a refused one may be sent again only while
                # no later counter has been used.
                if duis.counter < last or (duis.counter == last and seen is None):
                    raise RequestIdError("stale", f"counter {duis.counter} is not above {last}, the last one used "
                                                  f"from originator {duis.originator}: a DUIS RequestID counter "
                                                  "must strictly increase")
                self._counters[ckey] = duis.counter
            self._put(key, Seen(digest))
            return None

    def check_fresh(self, user: str, request_id: str) -> None:
        """Raise RequestIdError ("stale") unless `claim` would take `request_id` as a new request
        now: a DUIS id whose counter is above the last used from its originator (or equal to it
        while that request was refused before it applied), an opaque id not seen. Claims nothing
        (a front door checks an id this way before it answers without applying: DUIS's Transform)."""
        duis = parse_request_id(request_id)
        with self._lock:
            seen = self._ids.get((user, request_id))
            retryable = seen is not None and seen.state == "failed"
            if duis is None:
                if seen is not None and not retryable:
                    raise RequestIdError("stale", f"{request_id!r} was used already")
                return
            last = self._counters.get((user, duis.originator), -1)
            if duis.counter < last or (duis.counter == last and not retryable):
                raise RequestIdError("stale", f"counter {duis.counter} is not above {last}, the last one used from "
                                              f"originator {duis.originator}: a DUIS RequestID counter must strictly "
                                              "increase")

    def finish(self, user: str, request_id: str, *, operation: str = "", answer: bytes = b"") -> None:
        """The request was accepted: later retries get `answer` (or its operation)."""
        with self._lock:
            seen = self._ids.get((user, request_id))
            if seen is None:  # forgotten meanwhile (max_ids passed): remember it again
                seen = self._put((user, request_id), Seen(""))
            seen.state = "done"
            seen.operation = operation or seen.operation
            if answer:
                self._answer_bytes += len(answer) - len(seen.answer)
                seen.answer = answer
                self._evict()

    def fail(self, user: str, request_id: str, *, held: bool = False) -> bool:
        """The request was refused before anything applied (`held`: it was deleted from
        quarantine): its id may be sent again. A request held in quarantine stays held unless
        `held` is given. True if the id was freed."""
        with self._lock:
            seen = self._ids.get((user, request_id))
            if seen is not None and seen.state == ("held" if held else "pending"):
                seen.state = "failed"
                return True
            return False

    def hold(self, user: str, request_id: str, entry_id: str) -> None:
        """The request is held in quarantine as `entry_id`: a retry is told so, and nothing more is held."""
        with self._lock:
            seen = self._ids.get((user, request_id))
            if seen is not None:
                seen.state, seen.held = "held", entry_id

    def release(self, user: str, request_id: str) -> None:
        """A held request is being processed now (an operator released it)."""
        with self._lock:
            seen = self._ids.get((user, request_id))
            if seen is not None and seen.state == "held":
                seen.state = "pending"

    def get(self, user: str, request_id: str) -> Seen | None:
        with self._lock:
            return self._ids.get((user, request_id))

    def load(self, records: Iterable[dict[str, Any]]) -> None:
        """Remember the requests of journal records (their `request` entry, see journal_entry)."""
        for rec in records:
            req = rec.get("request")
            if not req:
                continue
            user, rid = req["user"], req["id"]
            duis = parse_request_id(rid)
            with self._lock:
                if duis is not None:
                    ckey = (user, duis.originator)
                    self._counters[ckey] = max(self._counters.get(ckey, -1), duis.counter)
                self._put((user, rid), Seen(req.get("digest", ""), "done", req.get("operation", "")))

    def _put(self, key: tuple[str, str], seen: Seen) -> Seen:
        old = self._ids.pop(key, None)
        if old is not None:
            self._answer_bytes -= len(old.answer)
        self._ids[key] = seen
        self._answer_bytes += len(seen.answer)
        self._evict()
        return seen

    def _evict(self) -> None:
        """Forget the oldest answered ids past max_ids or max_answer_bytes; an unanswered one (in
        progress, or held in quarantine, whose own cap bounds them) is moved to the newest end
        instead of forgotten."""
        for _ in range(len(self._ids)):
            if len(self._ids) <= self.max_ids and self._answer_bytes <= self.max_answer_bytes:
                break
            old_key, old = self._ids.popitem(last=False)
            if old.state in ("pending", "held"):
                self._ids[old_key] = old
            else:
                self._answer_bytes -= len(old.answer)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class RequestKey:
    """Who sent a request, under which id, asking what (its digest)."""

    user: str
    request_id: str
    digest: str

    def journal_entry(self, operation: str) -> dict[str, str]:
        return {"user": self.user, "id": self.request_id, "digest": self.digest, "operation": operation}
