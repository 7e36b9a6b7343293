"""Open server streams of one kind, and how far the slowest of them is behind: counted where the
streams run (WatchFleet, StreamAlerts, StreamResponses), read when metrics are scraped
(twin.services.metrics). Plain Python, so the DCC logic (twin.services.dcc) uses it too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Subscriber:
    """One open stream: `waiting_since` is the time.monotonic() the oldest item it has not yet
    delivered was produced (None: it has delivered everything it may deliver yet). The stream sets
    it as it goes; an attribute store, so a delivery costs nothing more."""

    __slots__ = ("waiting_since",)

    def __init__(self) -> None:
        self.waiting_since: float | None = None


class Subscribers:
    """The open streams of one kind (WatchFleet, StreamAlerts, StreamResponses) and how far the
    slowest is behind, read when metrics are scraped (cost: the streams open, never the items)."""

    def __init__(self) -> None:
        self._open: set[Subscriber] = set()

    @contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        """A stream is open for the duration of the `with`."""
        sub = Subscriber()
        self._open.add(sub)
        try:
            yield sub
        finally:
            self._open.discard(sub)

    @property
    def open(self) -> int:
        """Streams open now."""
        return len(self._open)

    def lag_s(self) -> float:
        """Wall seconds the oldest undelivered item of any open stream has waited since it was
        produced (0.0: every stream is caught up). Only items produced after their stream began
        count: a replay of older ones is not behind, as in the delivery windows of StreamLimits."""
        # tuple() copies the set in one step under the GIL (no Python code runs in it), so the
        # scrape's thread never sees the server loop change it mid-iteration.
        since = [s.waiting_since for s in tuple(self._open)]
        oldest = min((t for t in since if t is not None), default=None)
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)
