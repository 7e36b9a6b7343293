"""How long ticks take and how far a running clock lags its pace, kept by the engine in plain Python
(the engine imports no metrics library) for the services to export (twin.services.metrics reads
`FleetEngine.tick_timings()` when Prometheus scrapes)."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

# Upper bounds (wall seconds) of the tick duration buckets: a 20,000-hub fleet steps in a few
# milliseconds, a 30M-hub one on a cluster in seconds, a checkpoint tick of a large fleet in tens.
TICK_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class TickTimings:
    """A snapshot of the engine's tick timings.

    - bounds: the buckets' upper bounds in wall seconds, ascending (+Inf is implied).
    - cumulative: ticks that took at most each bound, then all ticks (len(bounds) + 1 counts,
      non-decreasing; the last equals `count`), since the engine started.
    - sum_s: wall seconds of all those ticks; count: how many.
    - behind_ticks: how far the running clock is behind its schedule (since the tick it runs or
      is about to run was due), in ticks at the clock's speed (0.0 when on time, paused, stopped,
      failed or running flat out).
    - slipped_s: wall seconds of schedule the running clock gave up, in total, because ticks took
      longer than its pace allows (it never catches up more than a second in a burst)."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum_s: float
    count: int
    behind_ticks: float = 0.0
    slipped_s: float = 0.0


class DurationHistogram:
    """Durations counted into fixed buckets: `observe` costs a bisect under an uncontended lock,
    `snapshot` copies the counts (the lock keeps a snapshot's count and buckets consistent when it
    is read from another thread)."""

    def __init__(self, bounds: tuple[float, ...] = TICK_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must be distinct and ascending, got {bounds}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(bounds) + 1)  # per bucket, the last one for beyond every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """Count one duration (wall seconds; a negative one, from a clock stepped back, as 0)."""
        seconds = max(0.0, seconds)
        i = bisect.bisect_left(self.bounds, seconds)  # the first bound >= seconds (buckets are "le")
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[tuple[int, ...], float, int]:
        """(cumulative counts per bound then in all, sum of seconds, count)."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for c in counts:
            running += c
            out.append(running)
        return tuple(out), total, running
