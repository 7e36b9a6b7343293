"""Which WAN networks are up when: a function of time per (region, technology), not a per-hub
array. A 3G switch-off in a region is one entry here; hubs on it go dark without being touched."""

from __future__ import annotations

import numpy as np

from twin.model.catalog import AREA_REGION, N_REGION_CODES, N_WAN, Region, WanTech

NEVER = np.iinfo(np.int64).max


class NetworkPlan:
    def __init__(self) -> None:
        # off_from[region, wan]: first tick the network is off; NEVER if it stays on.
        self.off_from = np.full((N_REGION_CODES, N_WAN), NEVER, dtype=np.int64)
        # on_from[region, wan]: first tick it is back (CSP-wide incidents end); NEVER if not.
        self.on_from = np.full((N_REGION_CODES, N_WAN), NEVER, dtype=np.int64)
        # The last up_by_area answer: every hub read asks for the same tick's table, thousands of
        # times a second, and the plan changes only through switch_off.
        self._by_area: tuple[int, np.ndarray] | None = None

    def switch_off(self, region: Region, wan: WanTech, tick: int, until: int | None = None) -> None:
        self.off_from[region, wan] = min(self.off_from[region, wan], tick)
        self.on_from[region, wan] = NEVER if until is None else until
        self._by_area = None

    def clear(self) -> None:
        """Every network on for good (the schedule is then entered again)."""
        self.off_from[...] = NEVER
        self.on_from[...] = NEVER
        self._by_area = None

    def up(self, tick: int) -> np.ndarray:
        """Boolean (region, wan) table for this tick."""
        return (self.off_from > tick) | (self.on_from <= tick)

    def up_by_area(self, tick: int) -> np.ndarray:
        """Boolean (area code, wan) table for this tick (read-only: it may be shared)."""
        cached = self._by_area
        if cached is not None and cached[0] == tick:
            return cached[1]
        table = self.up(tick)[AREA_REGION]
        table.setflags(write=False)
        self._by_area = (tick, table)
        return table

    def to_array(self) -> np.ndarray:
        return np.stack([self.off_from, self.on_from])

    @classmethod
    def from_array(cls, a: np.ndarray) -> NetworkPlan:
        p = cls()
        p.off_from[...], p.on_from[...] = a[0], a[1]
        return p
