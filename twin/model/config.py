"""What defines a fleet: size, seed, block size, start time, regions, model parameters.

A run is a pure function of this config and the journal of operator events; the shard count is
deliberately not part of it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from twin.model.catalog import REGIONS, Csp, region_by_name
from twin.model.errors import TwinInputError as TwinInputError  # re-exported: its long-standing home
from twin.model.params import TICK_SECONDS, ModelParams
from twin.model.timeutil import parse_instant

MAX_HUBS = 1_000_000_000  # the id space and the blocks allow more; memory decides in practice
DEFAULT_BLOCK_SIZE = 1 << 14
DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FleetConfig:
    hubs: int
    seed: int = 1
    block_size: int = DEFAULT_BLOCK_SIZE
    start: datetime = DEFAULT_START
    regions: tuple[Csp, ...] = REGIONS
    params: ModelParams = field(default_factory=ModelParams)

    def __post_init__(self) -> None:
        if isinstance(self.hubs, bool) or not isinstance(self.hubs, int):
            raise TwinInputError("hubs", f"must be a whole number, got {self.hubs!r}")
        if self.hubs <= 0:
            raise TwinInputError("hubs", f"must be at least 1, got {self.hubs}")
        if self.hubs > MAX_HUBS:
            raise TwinInputError("hubs", f"must be at most {MAX_HUBS:,}, got {self.hubs:,}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise TwinInputError("seed", f"must be a whole number in [0, 2^63), got {self.seed!r}")
        bs = self.block_size
        if not isinstance(bs, int) or bs < 64 or bs > (1 << 20) or bs & (bs - 1):
            raise TwinInputError("block_size", f"must be a power of two in [64, 2^20], got {bs!r}")

        # An instant, kept in UTC: nothing may read wall-clock fields (hour, date, day of year)
        # of the offset a user typed, or equal instants would give different runs.
        object.__setattr__(self, "start", parse_instant(self.start, "start"))
        if self.start.timestamp() % TICK_SECONDS:
            raise TwinInputError("start", "must fall on a half-hour boundary")
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise TwinInputError("regions", "must name each region at most once, and at least one")

    @property
    def n_blocks(self) -> int:
        return -(-self.hubs // self.block_size)

    @functools.cached_property  # (of a frozen config: computed once, read for every hub record)
    def start_tick_of_day(self) -> int:
        """The UTC half-hour of the day the start falls in (0-47); `start` is always UTC."""
        midnight = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        return int((self.start - midnight).total_seconds()) // TICK_SECONDS

    def time_of(self, tick: int) -> datetime:
        return self.start + timedelta(seconds=tick * TICK_SECONDS)

    def tick_at(self, when: datetime) -> int:
        """The tick whose half-hour contains `when` (may be negative: before the start)."""
        return int((when - self.start).total_seconds() // TICK_SECONDS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hubs": self.hubs,
            "seed": self.seed,
            "block_size": self.block_size,
            "start": self.start.isoformat(),
            "regions": [r.name.title() for r in self.regions],
            "params": self.params.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FleetConfig:
        return cls(
            hubs=d["hubs"],
            seed=d.get("seed", 1),
            block_size=d.get("block_size", DEFAULT_BLOCK_SIZE),
            start=_start(d["start"]) if "start" in d else DEFAULT_START,
            regions=parse_regions(d.get("regions")),
            params=ModelParams.from_dict(d.get("params", {})),
        )


def _start(value: Any) -> datetime:

    return parse_instant(value, "start")


def parse_regions(value: str | list[str] | tuple[Any, ...] | None) -> tuple[Csp, ...]:
    """'North,Central' or a list of names -> regions in canonical order."""
    if value is None:
        return REGIONS
    names = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for n in names:
        if isinstance(n, Csp):
            out.append(n)
            continue
        try:
            out.append(region_by_name(str(n)))
        except ValueError as e:
            raise TwinInputError("regions", str(e)) from None
    if not out:
        raise TwinInputError("regions", "name at least one region")
    if len(set(out)) != len(out):
        raise TwinInputError("regions", "a region is named twice")
    return tuple(sorted(out))
