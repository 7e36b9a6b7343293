"""What the services see of the engine: typed interfaces (PEP 544 protocols), not a class.

`HubReads` is what answering a read needs (an API replica's view of the fleet implements it from
shared memory); `FleetEngine` adds everything else the API does: the clock, operator events as
operations, history and alerts, queries over the fleet, rewind. `FleetSupervisor` implements both;
a type checker proves it (tests/unit/test_engine_interface.py), so a service never depends on the
supervisor's internals and a double for a test is any object with these members."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from twin.engine.clock import ClockFailureListener, ClockState
from twin.engine.operations import OperationFilter
from twin.engine.timing import TickTimings
from twin.model.catalog import VersionTable
from twin.model.config import FleetConfig
from twin.model.network import NetworkPlan
from twin.model.summary import TickSummary

if TYPE_CHECKING:
    from twin.engine.alert_log import AlertLog
    from twin.engine.history import HistoryStore
    from twin.engine.latency import LatencyTable
    from twin.engine.local_reads import LocalReads
    from twin.engine.placement import ClusterView
    from twin.engine.requests import RequestKey, RequestLedger

TickListener = Callable[[TickSummary], None]


@runtime_checkable
class HubReads(Protocol):
    """Reading one hub. Hub ids are dense (0..config.hubs - 1)."""

    @property
    def config(self) -> FleetConfig:
        """The fleet's configuration (seed, size, start time, tick length)."""

    @property
    def tick(self) -> int:
        """The next tick to run (so `tick - 1` is the last one completed)."""

    def shard_of(self, hub: int) -> int:
        """The index of the shard holding `hub`; KeyError outside the fleet."""

    def hub(self, hub: int) -> dict[str, Any]:
        """The hub's whole record (devices, WAN, reachability and why not, supplier, region)."""

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        """The answer to read Service Request `srv` ("4.1.1", "4.6.1", "4.8.1", "4.17") for `fuel`
        ("elec" or "gas"); ValueError for a fuel the premises lacks."""

    def latency_table(self) -> LatencyTable | None:
        """Service Request response times as the capacity model says after the last observed tick
        (`LatencyTable.seconds(csp=, wan=, cell=, message=)`); None when the run's capacity model
        is off. Cheap: an immutable table replaced after each tick, read without a lock."""


class ShardAccess(Protocol):
    """Calls straight to the shard actors, batched by the API (twin.services.batching)."""

    def shard_of(self, hub: int) -> int: ...

    @property
    def shards(self) -> Sequence[Any]:
        """The shard actors' handles (Ray), in hub order."""

    @property
    def local_reads(self) -> LocalReads | None:
        """Shared-memory reads of the shards on this node, once `enable_local_reads()` ran."""


@runtime_checkable
class FleetEngine(HubReads, ShardAccess, Protocol):
    """The whole engine as the services use it. Blocking calls (shard calls, locks) are to be run
    off an event loop (`asyncio.to_thread`); properties are cheap."""

    # -- the run ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The run's name (its directory's name; a branch's id)."""

    @property
    def run_dir(self) -> Path: ...

    @property
    def head(self) -> int:
        """The furthest tick reached (beyond `tick` after a rewind)."""

    @property
    def history(self) -> Sequence[TickSummary]:
        """The retained tick summaries, oldest first (28 days by default)."""

    @property
    def history_db(self) -> HistoryStore:
        """The run's whole tick history on disk (DuckDB); `flushed()` makes it whole for a reader."""

    @property
    def alert_log(self) -> AlertLog:
        """Every alert sent, by position, for the retention window (re-delivery to subscribers)."""

    @property
    def requests(self) -> RequestLedger:
        """The API request ids seen (retries get the first answer), rebuilt from the journal."""

    def enable_local_reads(self) -> LocalReads: ...

    # -- time ------------------------------------------------------------------------------------
    @property
    def clock_state(self) -> ClockState: ...

    @property
    def clock_error(self) -> str | None:
        """Why the clock failed, while it is FAILED."""

    @property
    def speed(self) -> float | None:
        """Simulated seconds per wall second; None: as fast as possible."""

    def clock(self) -> dict[str, Any]:
        """{"tick", "time" (datetime, UTC), "state" (ClockState), "speed", "error"}."""

    def start_clock(self, *, speed: float | None = ..., running: bool = True) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_speed(self, speed: float | None) -> None:
        """ValueError unless positive or None."""

    def step(self, n: int = 1) -> list[TickSummary]:
        """Run n ticks now; RunFailure if the run could not."""

    def tick_timings(self) -> TickTimings:
        """How long the ticks took (wall seconds, a cumulative histogram since the engine
        started) and how far the running clock lags its schedule (ticks); cheap, any thread."""

    def rewind(self, tick: int) -> dict[str, Any]:
        """Back to `tick` (TwinInputError "tick" outside 0..tick); {tick, from_checkpoint, replayed, seconds}."""

    def add_listener(self, fn: TickListener) -> None:
        """`fn(summary)` after every tick, on the stepping thread: it must be quick."""

    def remove_listener(self, fn: TickListener) -> None: ...

    def add_failure_listener(self, fn: ClockFailureListener) -> None: ...

    def remove_failure_listener(self, fn: ClockFailureListener) -> None: ...

    # -- operations ------------------------------------------------------------------------------
    def submit(self, event: dict[str, Any], *, relative_to: int | None = None,
               request: RequestKey | None = None) -> dict[str, Any]:
        """Validate, journal, accept: the operation's view (AIP-151 shape). TwinInputError names
        a bad field; CommandConflict, OperationStateConflict, UnknownOperation for the state;
        RunStateError while rewound."""

    def operation(self, name: str) -> dict[str, Any]:
        """One operation's view; TwinInputError ("name") if there is none."""

    def operations_page(self, where: OperationFilter | None, start: int, limit: int
                        ) -> tuple[list[dict[str, Any]], int]:
        """Up to `limit` views `where` matches from position `start`, and the next position (0: end)."""

    # -- queries ---------------------------------------------------------------------------------
    def list_hubs(self, filters: dict[str, Any], start: int, limit: int
                  ) -> tuple[list[dict[str, Any]], int | None]: ...

    def hub_events(self, hub: int, limit: int, *, start: tuple[int, int] | None = None) -> list[dict[str, Any]]: ...

    def aggregate(self, by: list[str]) -> list[dict[str, Any]]: ...

    def firmware_versions(self) -> VersionTable:
        """Firmware versions per device model (the catalog's plus those rollouts added): a copy."""

    def network_view(self) -> NetworkPlan:
        """The network schedule now: a copy no tick or command changes."""

    def schedule_view(self) -> tuple[int, np.ndarray, int, list[int]]:
        """(last completed tick, the schedule's windows, the tick it is final before, each shard's first hub)."""

    def cluster(self, *, timeout_s: float = ...) -> ClusterView:
        """The Ray nodes, the shards on each and the newest shard recoveries (blocking, at most
        `timeout_s` waited for the shards)."""

