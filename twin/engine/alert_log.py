"""The run's alert log: every device alert the fleet sends and the DCC forwards (alert storm
protection's discards left out), by position, kept on disk in the run directory (`alerts/`) for
a retention window, so a subscriber that missed some (it was slow, disconnected, or the server
restarted) gets them again, in order, exactly once.

A position is `tick << 32 | seq`: the tick the alert was sent in and its place in that tick (1,
2, ...; the tick's alerts ordered by second, hub, kind). It depends only on what the fleet did,
never on the shard layout or on restarts. Each tick with alerts is one file of numpy columns
(`0000000123.npz`, format version in the file), written to a temporary name and renamed, so a
reader sees a tick whole or not at all. Ticks without alerts write nothing. The newest ticks stay
in memory too (bounded by `cache_alerts`), so live readers never touch the disk.

The retention is the DCC's: a Device Alert it could not deliver is held for 2 days for
re-delivery when the user reconnects (SECCo glossary "Device Alert", domain/FACTS.md 3.5)."""

from __future__ import annotations

import bisect
import io
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.model.params import TICK_SECONDS

FORMAT_VERSION = 1
SEQ_BITS = 32
RETENTION_DAYS = 2.0  # failed Device Alerts held 2 days (SECCo glossary "Device Alert")
# Columns, in the smallest dtype that holds them: 10 bytes per alert.
COLUMNS: dict[str, type] = {"hub": np.uint32, "kind": np.uint8, "sec": np.uint16, "area": np.uint8,
                            "supplier": np.uint8, "gas_supplier": np.uint8}
BYTES_PER_ALERT = sum(np.dtype(t).itemsize for t in COLUMNS.values())
MARKER = "log.json"
CHUNK = 65_536  # alerts a reader scans at a time


def position(tick: int, seq: int) -> int:
    """The position of the seq-th alert (1-based; 0 = before the first) of `tick`."""
    return (tick << SEQ_BITS) | seq


def split(pos: int) -> tuple[int, int]:
    """(tick, seq) of a position."""
    return pos >> SEQ_BITS, pos & ((1 << SEQ_BITS) - 1)


@dataclass(frozen=True, eq=False)
class TickAlerts:
    """One tick's alerts in position order: columns of equal length (see COLUMNS); the alert at
    index i has position `position(tick, i + 1)`. `recorded_at` is time.monotonic() when the
    fleet recorded it (0.0 when read back from disk)."""

    tick: int
    cols: dict[str, np.ndarray]
    recorded_at: float = 0.0

    @property
    def size(self) -> int:
        return int(self.cols["hub"].size)

    @property
    def nbytes(self) -> int:
        return sum(int(c.nbytes) for c in self.cols.values())


def canonical(events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A tick's alert events (TickSummary.alert_events: hub, kind, sec, area, supplier,
    gas_supplier) as log columns in position order: by second, then hub, then kind. Shards send
    their own hubs' alerts in shard order; sorting makes the order (and so every position)
    independent of the layout. Alerts marked `throttled` (alert storm protection discarded them,
    SECMP0062: twin.model.capacity.AlertStorm) are left out: the DCC never forwards them, so no
    subscriber gets them; the tick's capacity report counts them. The rule is decided in (hub,
    kind, time) order, so what is left out is the same for any shard layout too."""
    throttled = events.get("throttled")
    if throttled is not None and throttled.any():
        keep = ~np.asarray(throttled, bool)
        events = {name: np.asarray(events[name])[keep] for name in COLUMNS}
    order = np.lexsort((events["kind"], events["hub"], events["sec"]))
    if events["hub"].size and int(events["hub"].max()) >= 1 << 32:
        raise ValueError("the alert log holds hub ids below 2**32")
    return {name: np.ascontiguousarray(np.asarray(events[name])[order].astype(dtype, copy=False))
            for name, dtype in COLUMNS.items()}


class AlertLog:
    """Append one tick's alerts at a time (`append`), read any retained tick (`get`).

    `oldest_tick`..`newest_tick` is the retained window: every tick in it is either in a file
    or had no alerts. Thread-safe: the clock thread appends, the API's loop reads."""

    def __init__(self, directory: Path, *, retention_days: float = RETENTION_DAYS,
                 cache_alerts: int = 2_000_000):
        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        self.dir = directory
        self.retention_ticks = math.ceil(retention_days * 86_400 / TICK_SECONDS)
        self.cache_alerts = cache_alerts
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, TickAlerts] = OrderedDict()  # newest last
        self._cached = 0
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / MARKER
        if marker.exists():
            meta = json.loads(marker.read_text())
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"{directory}: alert log format {meta.get('format_version')}, expected {FORMAT_VERSION}")
            self.first_tick = int(meta["first_tick"])
        else:
            self.first_tick = -1  # set by reset()
        self._files = sorted(int(p.stem) for p in directory.glob("*.npz"))
        self.newest_tick = self._files[-1] if self._files else self.first_tick - 1

    # -- the window -------------------------------------------------------------------------
    @property
    def oldest_tick(self) -> int:
        """The oldest tick still retained (the log's first tick if it has not pruned yet)."""
        if self.first_tick < 0:
            return 0
        return max(self.first_tick, self.newest_tick - self.retention_ticks + 1)

    def oldest_position(self) -> int:
        """The smallest `start_after` a reader may resume from: before the oldest retained tick."""
        return position(self.oldest_tick, 0)

    # -- writing ------------------------------------------------------------------------------
    def append(self, tick: int, events: dict[str, np.ndarray] | None) -> TickAlerts:
        """Record tick `tick`'s alerts as forwarded to DCC Users (throttled ones left out, see
        `canonical`; ticks come in order; a rewound run records the same ticks again and they
        replace the old files) and prune what is past retention."""
        cols = canonical(events) if events and events["hub"].size else {n: np.zeros(0, t) for n, t in COLUMNS.items()}
        ta = TickAlerts(tick, cols, time.monotonic())
        with self._lock:
            if self.first_tick < 0:
                raise RuntimeError("reset() the log before appending")
            path = self._path(tick)
            if ta.size:
                buf = io.BytesIO()
                arrays: dict[str, Any] = {"format_version": np.array(FORMAT_VERSION), "tick": np.array(tick, np.int64), **cols}
                np.savez(buf, **arrays)
                _write_atomic(path, buf.getbuffer())  # derived data (re-made from checkpoint + journal): not fsynced
                if tick not in self._files:
                    bisect.insort(self._files, tick)
            elif path.exists():
                path.unlink()
            self.newest_tick = max(self.newest_tick, tick)
            old = self._cache.pop(tick, None)
            self._cache[tick] = ta
            self._cached += ta.size - (old.size if old is not None else 0)
            while len(self._cache) > 1 and self._cached > self.cache_alerts:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.size
            self._prune()
        return ta

    def reset(self, next_tick: int) -> None:
        """Make the log complete up to `next_tick - 1` and record from `next_tick` on: ticks at or
        after it are forgotten (a resumed run runs them again, maybe differently); a log that
        begins now (a new run, or a run or branch from before the log) begins at `next_tick`."""
        with self._lock:
            for t in [t for t in self._files if t >= next_tick]:
                self._path(t).unlink(missing_ok=True)
            self._files = [t for t in self._files if t < next_tick]
            for t in [t for t in self._cache if t >= next_tick]:
                self._cached -= self._cache.pop(t).size
            if self.first_tick < 0 or self.first_tick > next_tick:
                self.first_tick = next_tick
                _write_atomic(self.dir / MARKER, json.dumps({"format_version": FORMAT_VERSION,
                                                              "first_tick": next_tick}).encode())
            self.newest_tick = next_tick - 1
            self._prune()

    def _prune(self) -> None:
        keep_from = self.oldest_tick
        while self._files and self._files[0] < keep_from:
            self._path(self._files.pop(0)).unlink(missing_ok=True)
        for t in [t for t in self._cache if t < keep_from]:
            self._cached -= self._cache.pop(t).size

    def _path(self, tick: int) -> Path:
        return self.dir / f"{tick:010d}.npz"

    # -- reading ------------------------------------------------------------------------------
    def cached(self, tick: int) -> TickAlerts | None:
        """Tick `tick` if it is in memory (no I/O)."""
        with self._lock:
            return self._cache.get(tick)

    def get(self, tick: int) -> TickAlerts | None:
        """Tick `tick`'s alerts (empty if it had none), or None if it is outside the retained
        window (pruned, or not yet recorded). May read a file: call it off the event loop."""
        with self._lock:
            if not self.oldest_tick <= tick <= self.newest_tick:
                return None
            hit = self._cache.get(tick)
            if hit is not None:
                return hit
            path = self._path(tick)
        try:
            with np.load(path) as z:
                if int(z["format_version"]) != FORMAT_VERSION:
                    raise ValueError(f"{path}: format {int(z['format_version'])}, expected {FORMAT_VERSION}")
                cols = {name: z[name] for name in COLUMNS}
        except FileNotFoundError:
            with self._lock:
                if not self.oldest_tick <= tick <= self.newest_tick:
                    return None  # pruned meanwhile
            cols = {n: np.zeros(0, t) for n, t in COLUMNS.items()}  # a tick without alerts
        return TickAlerts(tick, cols)


class AlertCursor:
    """One reader's place in the log: `after` is the position of the last alert it delivered (or
    a tick boundary `position(t, 0)`). The reader asks `next_tick()` which tick to read, gets it
    from the log, delivers the alerts `indices(ta)` names one by one (`delivered`), then
    `finished(ta)`. `select` maps a tick's columns to the mask of alerts this reader may see."""

    def __init__(self, log: AlertLog, after: int, select: Callable[[dict[str, np.ndarray]], np.ndarray]):
        self.log = log
        self.after = after
        self.select = select

    def next_tick(self) -> int | None:
        """The tick to read next, or None while the reader is at the head of the log."""
        tick, _ = split(self.after)
        return tick if tick <= self.log.newest_tick else None

    def expired(self) -> bool:
        """The next tick to read has been pruned (the reader fell behind the retention)."""
        return split(self.after)[0] < self.log.oldest_tick

    def chunks(self, ta: TickAlerts) -> Iterator[np.ndarray]:
        """Indices in `ta` of the alerts after the cursor this reader selects, in order, a chunk
        of at most CHUNK alerts scanned at a time: a reader holds at most CHUNK x 9 bytes (the
        int64 indices and the mask) however big the tick."""
        tick, seq = split(self.after)
        if ta.tick != tick:
            raise ValueError(f"the cursor is in tick {tick}, not {ta.tick}")
        for lo in range(seq, ta.size, CHUNK):
            hi = min(lo + CHUNK, ta.size)
            idx = np.flatnonzero(self.select({k: v[lo:hi] for k, v in ta.cols.items()}))
            if idx.size:
                yield idx + lo

    def delivered(self, ta: TickAlerts, i: int) -> int:
        self.after = position(ta.tick, int(i) + 1)
        return self.after

    def finished(self, ta: TickAlerts) -> None:
        self.after = position(ta.tick + 1, 0)


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
