"""Deferred responses: requests acknowledged now and answered later (a read of a dark hub, a
device change applied at a tick), and each user's resumable log of the responses that settle them."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from twin.services.dcc.errors import PositionAhead, PositionExpired, StreamBehind
from twin.services.dcc.requests import ServiceRequest, ServiceResponse
from twin.services.subscribers import Subscriber

PENDING_READ_DAYS = 2.0  # an acknowledged read fails if the hub stays dark this long [U]


@dataclass(eq=False)
class Pending:
    """A request acknowledged and not yet answered: a read waiting for its hub to be reachable
    (until `deadline_tick`), a device change waiting for its `operation` to finish, or a read
    the network answers later than the caller's deadline: its `result`, taken when the request
    reached the device, is delivered once the simulated clock passes `due` (the time it was sent
    plus its `latency_s`)."""

    user_id: str
    request: ServiceRequest
    hub: int
    fuel: str  # "electricity" or "gas"
    csp: str
    deadline_tick: int  # -1 for an operation or a late answer: it ends when that does
    operation: str = ""
    due: datetime | None = None
    result: dict[str, Any] | None = None
    latency_s: float | None = None


class DueAnswers:
    """Reads the network answers later than their caller's deadline (Pending with a `due`
    time), by due time: a tick takes what has come due at a cost that grows with what it
    delivers, not with all that waits. Ties go by arrival, so a user's log gets them in one
    order."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Pending]] = []
        self._seq = itertools.count()

    def add(self, p: Pending) -> None:
        if p.due is None:
            raise ValueError("a late answer needs its due time")
        heapq.heappush(self._heap, (p.due, next(self._seq), p))

    def pop_due(self, now: datetime) -> list[Pending]:
        """The answers due at or before `now`, earliest first, taken out."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)

    def requests(self) -> list[str]:
        """The request ids waiting, earliest due first (for operators and tests)."""
        return [p.request.request_id for _, _, p in sorted(self._heap)]


@dataclass(eq=False)
class ResponseLog:
    """One user's deferred responses, numbered 1, 2, ... (the newest `keep` of them, each with the
    time.monotonic() it was produced)."""

    keep: int
    items: deque[tuple[float, ServiceResponse]] = field(default_factory=deque)
    last: int = 0  # position of the newest
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def first(self) -> int:
        """Position of the oldest kept (last + 1 when none is kept)."""
        return self.last - len(self.items) + 1

    def append(self, resp: ServiceResponse) -> ServiceResponse:
        """Keep `resp` as the next position; returns it with its position set."""
        self.last += 1
        resp = replace(resp, position=self.last)
        self.items.append((time.monotonic(), resp))
        if len(self.items) > self.keep:
            self.items.popleft()
        wake, self.wake = self.wake, asyncio.Event()
        wake.set()
        return resp

    def start(self, after: int | None) -> int:
        """The cursor a stream resuming after position `after` starts from (None: from now).
        PositionExpired if `after` is older than the oldest kept, PositionAhead if beyond the newest."""
        if after is None:
            return self.last
        if after < self.first - 1:
            raise PositionExpired("start_after_position", after, self.first - 1, "responses")
        if after > self.last:
            raise PositionAhead("start_after_position", after, self.last, "responses")
        return after

    async def follow(self, cursor: int, *, delivery_s: float,
                     subscriber: Subscriber | None = None) -> AsyncIterator[ServiceResponse]:
        """The responses after `cursor` in position order, replayed then live, forever. Ends with
        StreamBehind once a response produced after it began waits undelivered longer than
        `delivery_s` (the subscriber resumes after what it got), PositionExpired if a replay falls
        behind the responses kept. `subscriber` (if given) is kept told since when its oldest
        undelivered response has waited."""
        began = time.monotonic()
        sub = subscriber or Subscriber()
        try:
            while True:
                wake = self.wake
                if cursor >= self.last:
                    sub.waiting_since = None
                    await wake.wait()
                    continue
                if cursor < self.first - 1:  # a replay slower than responses arrive outran the kept ones
                    raise PositionExpired("start_after_position", cursor, self.first - 1, "responses")
                at, resp = self.items[cursor + 1 - self.first]
                sub.waiting_since = at if at >= began else None
                if at >= began and time.monotonic() - at > delivery_s:
                    raise StreamBehind("response", "resume_after_position", cursor, delivery_s)
                yield resp
                cursor += 1
        finally:
            sub.waiting_since = None


class ResponseLogs:
    """Every user's ResponseLog, made on first use."""

    def __init__(self, keep: int):
        self.keep = keep
        self._logs: dict[str, ResponseLog] = {}

    def of(self, user_id: str) -> ResponseLog:
        log = self._logs.get(user_id)
        if log is None:
            log = self._logs[user_id] = ResponseLog(self.keep)
        return log

    def push(self, user_id: str, resp: ServiceResponse) -> ServiceResponse:
        """Keep a deferred response for the user's streams (open now or resumed later)."""
        return self.of(user_id).append(resp)
