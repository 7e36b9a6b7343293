"""Which WAN networks are up when: a function of time per (region, technology), not a per-hub
array. A 3G switch-off in a region is one entry here; hubs on it go dark without being touched.

The schedule is a set of off windows, one per event (a permanent switch-off, a CSP-wide incident),
and a network is up at a tick only when no window covers it: overlapping, nested or disjoint
windows on the same network compose as their union, so an incident that ends never brings back a
network switched off for good, and two incidents never merge into one long one."""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.model.catalog import AREA_CSP, N_CSP, N_WAN, Csp, WanTech

NEVER = np.iinfo(np.int64).max


class NetworkPlan:
    def __init__(self) -> None:
        # One row per off window: region, technology, first tick off, first tick back (NEVER: for good).
        self.windows = np.zeros((0, 4), dtype=np.int64)
        # The last up_by_area answer: every hub read asks for the same tick's table, thousands of
        # times a second, and the plan changes only through switch_off.
        self._by_area: tuple[int, np.ndarray] | None = None

    def switch_off(self, region: Csp, wan: WanTech, tick: int, until: int | None = None) -> None:
        """Add an off window [tick, until) (until None: for good) for one network."""
        row = np.array([[int(region), int(wan), int(tick), NEVER if until is None else int(until)]], np.int64)
        if not (self.windows == row).all(axis=1).any():
            self.windows = np.concatenate([self.windows, row])
        self._by_area = None

    def clear(self) -> None:
        """Every network on for good (the schedule is then entered again)."""
        self.windows = np.zeros((0, 4), dtype=np.int64)
        self._by_area = None

    def up(self, tick: int) -> np.ndarray:
        """Boolean (CSP code, wan) table for this tick; its last row (catalog.NO_CSP, padding rows)
        is always up."""
        table = np.ones((N_CSP + 1, N_WAN), dtype=bool)
        w = self.windows
        cover = (w[:, 2] <= tick) & (tick < w[:, 3])
        table[w[cover, 0], w[cover, 1]] = False
        return table

    def up_by_area(self, tick: int) -> np.ndarray:
        """Boolean (area code, wan) table for this tick (read-only: it may be shared)."""
        cached = self._by_area
        if cached is not None and cached[0] == tick:
            return cached[1]
        table = self.up(tick)[AREA_CSP]
        table.setflags(write=False)
        self._by_area = (tick, table)
        return table

    def windows_of(self, region: Csp) -> list[tuple[int, int, int]]:
        """(technology, off from, back from or NEVER) of a region's windows, by start then technology."""
        w = self.windows[self.windows[:, 0] == int(region)]
        w = w[np.lexsort((w[:, 1], w[:, 2]))]
        return [(int(a), int(b), int(c)) for a, b, c in w[:, 1:]]

    def off_since(self, region: Csp, wan: WanTech, tick: int) -> int:
        """If the network is off at `tick`, the tick it went off (the start of the union of windows
        covering it); else the start of its next window; NEVER if none."""
        w = self.windows[(self.windows[:, 0] == int(region)) & (self.windows[:, 1] == int(wan))]
        w = w[np.argsort(w[:, 2], kind="stable")]
        start, end = NEVER, NEVER
        for off, on in w[:, 2:]:  # a handful of windows per network
            if start != NEVER and off <= end:
                end = max(end, int(on))
                continue
            if start != NEVER and start <= tick < end:
                return start
            start, end = int(off), int(on)
            if start > tick:
                return start
        return start if start != NEVER and (start > tick or tick < end) else NEVER

    def to_array(self) -> np.ndarray:
        """The windows as an (n, 4) int64 array (region, technology, off from, back from)."""
        return self.windows.copy()

    @classmethod
    def from_array(cls, a: np.ndarray) -> NetworkPlan:
        p = cls()
        a = np.asarray(a, np.int64)
        p.windows = a.reshape(-1, 4).copy()
        return p

    def to_record(self) -> dict[str, Any]:
        """Checkpoint data: the windows (the by-area table is a cache, rebuilt on demand)."""
        return {"windows": self.windows}

    @classmethod
    def from_record(cls, fields: dict[str, Any], context: Any = None) -> NetworkPlan:
        return cls.from_array(fields["windows"])
