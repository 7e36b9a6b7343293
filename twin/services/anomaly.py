"""Threshold Anomaly Detection (FACTS §3.4): per-User, per-SR rolling counts, with excess requests quarantined."""

from __future__ import annotations

import bisect
import builtins
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class QuarantineFull(Exception):
    """The quarantine holds max_entries requests already; the new one is refused."""


@dataclass(frozen=True)
class QuarantineEntry:
    id: str  # "q-000001"
    user_id: str
    srv: str
    request: dict[str, Any]
    quarantined_at: float  # wall-clock seconds
    count: int  # requests in the window including this one
    threshold: int


class AnomalyDetector:
    """Admits up to a threshold of requests per (user, SRV) in any window_s; quarantines the rest.

    Only admitted requests fill the window, so a User gets its threshold's worth through per window
    however hard it pushes, and each window deque never grows past the threshold.
    """

    def __init__(self, *, window_s: float = 60.0, default_threshold: int = 1000,
                 thresholds: dict[str, int] | None = None,
                 user_thresholds: dict[tuple[str, str], int] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 max_entries: int = 100_000) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        limits = [default_threshold, *(thresholds or {}).values(), *(user_thresholds or {}).values()]
        if any(t < 0 for t in limits):
            raise ValueError("anomaly detection thresholds must not be negative")
        self.window_s = window_s
        self.default_threshold = default_threshold
        self.thresholds = dict(thresholds or {})
        self.user_thresholds = dict(user_thresholds or {})
        self.max_entries = max_entries
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], deque[float]] = {}
        # Admissions leased to other API processes: (end of the hold, how many) per (user, SRV).
        self._leases: dict[tuple[str, str], deque[list]] = {}
        self._quarantine: dict[str, QuarantineEntry] = {}
        # Entry numbers in order, for paging from any point; numbers of entries taken out stay
        # until they are half of the list.
        self._order: list[int] = []
        self._gone = 0
        self._next_id = 1

    def threshold(self, user_id: str, srv: str) -> int:
        return self.user_thresholds.get((user_id, srv), self.thresholds.get(srv, self.default_threshold))

    def admit(self, user_id: str, srv: str,
              request: dict[str, Any] | Callable[[], dict[str, Any]]) -> QuarantineEntry | None:
        """None if the request may proceed; otherwise the QuarantineEntry now holding it. `request`
        may be a function making the copy to keep, called only when the request is quarantined."""
        limit = self.threshold(user_id, srv)
        with self._lock:
            now = self._clock()
            window = self._window(user_id, srv, now)
            count = len(window) + self._leased_count(user_id, srv) + 1
            if count <= limit:
                window.append(now)
                return None
            if len(self._quarantine) >= self.max_entries:
                raise QuarantineFull(f"quarantine holds {self.max_entries} requests; refusing {srv} from {user_id}")
            kept = request() if callable(request) else request
            entry = QuarantineEntry(_entry_id(self._next_id), user_id, srv, kept, self._wall_clock(), count, limit)
            self._order.append(self._next_id)
            self._next_id += 1
            self._quarantine[entry.id] = entry
            return entry

    def lease(self, user_id: str, srv: str, count: int, hold_s: float) -> int:
        """Admit up to `count` requests on behalf of another API process, which answers them itself
        within `hold_s` and hands back the ones it did not use; returns how many. Leased admissions
        count as if used at the end of their hold, so they stay in the window at least as long as
        any of them could have been used: a user never gets more than its threshold answered in a
        window, whichever processes answered. At most half of what is left is leased at once, so
        admissions held unused elsewhere leave room for requests answered here. None is
        quarantined here: the process sends the request on, and admit() decides."""
        limit = self.threshold(user_id, srv)
        with self._lock:
            now = self._clock()
            window = self._window(user_id, srv, now)
            left = limit - len(window) - self._leased_count(user_id, srv)
            granted = max(0, min(count, left if left <= 1 else left // 2))
            if granted:
                self._leases.setdefault((user_id, srv), deque()).append([now + hold_s, granted])
            return granted

    def unlease(self, user_id: str, srv: str, count: int) -> None:
        """Take back `count` leased admissions that were not used (from the newest leases)."""
        with self._lock:
            leases = self._leases.get((user_id, srv))
            while leases and count > 0:
                back = min(count, leases[-1][1])
                leases[-1][1] -= back
                count -= back
                if leases[-1][1] == 0:
                    leases.pop()

    def _window(self, user_id: str, srv: str, now: float) -> deque[float]:
        """The (user, SRV) window with what has left it removed; the lock is held."""
        cutoff = now - self.window_s
        window = self._windows.setdefault((user_id, srv), deque())
        while window and window[0] <= cutoff:
            window.popleft()
        leases = self._leases.get((user_id, srv))
        while leases and leases[0][0] <= cutoff:  # granted in order, so their holds end in order
            leases.popleft()
        return window

    def _leased_count(self, user_id: str, srv: str) -> int:
        return sum(n for _, n in self._leases.get((user_id, srv), ()))

    def list(self, user_id: str | None = None) -> list[QuarantineEntry]:
        with self._lock:
            return [e for e in self._quarantine.values() if user_id is None or e.user_id == user_id]

    def page(self, user_id: str | None, start: int, limit: int) -> builtins.list[QuarantineEntry]:
        """Up to `limit` entries (of `user_id`, or all), oldest first, from entry number `start`
        ("q-000042" is number 42). Cost grows with the entries passed over, not the quarantine."""
        with self._lock:
            out: builtins.list[QuarantineEntry] = []
            i = bisect.bisect_left(self._order, start)
            while i < len(self._order) and len(out) < limit:
                e = self._quarantine.get(_entry_id(self._order[i]))
                if e is not None and (user_id is None or e.user_id == user_id):
                    out.append(e)
                i += 1
            return out

    def release(self, entry_id: str) -> QuarantineEntry:
        """Take a request out of quarantine so the caller can process it."""
        return self._pop(entry_id)

    def delete(self, entry_id: str) -> QuarantineEntry:
        """Take a request out of quarantine and drop it."""
        return self._pop(entry_id)

    def _pop(self, entry_id: str) -> QuarantineEntry:
        with self._lock:
            try:
                entry = self._quarantine.pop(entry_id)
            except KeyError:
                raise KeyError(f"no quarantined request {entry_id!r}") from None
            self._gone += 1
            if self._gone * 2 > len(self._order):
                self._order = [n for n in self._order if _entry_id(n) in self._quarantine]
                self._gone = 0
            return entry


def _entry_id(number: int) -> str:
    return f"q-{number:06d}"


def entry_number(entry_id: str) -> int:
    """42 for "q-000042"."""
    return int(entry_id.removeprefix("q-"))
