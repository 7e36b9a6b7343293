"""Hub lookups and reads served from the shards' shared memory, for the API in the driver process.

A lookup needs one hub's row, the tick it describes, the network schedule and the firmware version
labels; the last two are the planner's fleet-level copies. Anything that cannot be answered here
(a shard on another node, a shard busy writing past the wait, a shard restarting) returns None and
the caller asks the shard over Ray as before, so this is only ever a shortcut."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol, cast

import numpy as np
import ray

from twin.engine.shared_state import SharedReader, sweep_stale, unlink
from twin.model.config import FleetConfig
from twin.model.ops.runtime import FleetPlanner
from twin.model.query import hub_record
from twin.model.readings import register_facts, service_facts

log = logging.getLogger("twin.engine")


class ShardedFleet(Protocol):
    """What local reads need of the engine that builds them (the supervisor): its config, shard
    actors, the shard holding a hub, and the planner's fleet-level copies (network, versions)."""

    @property
    def config(self) -> FleetConfig: ...

    @property
    def shards(self) -> Sequence[Any]: ...

    @property
    def planner(self) -> FleetPlanner: ...

    def shard_of(self, hub: int) -> int: ...


class LocalReads:
    def __init__(self, supervisor: ShardedFleet):
        self.sup = supervisor
        self.node = ray.get_runtime_context().get_node_id()
        self.readers: list[SharedReader | None] = [None] * len(supervisor.shards)
        self.names: set[str] = set()  # every segment handed out, to remove at shutdown
        self._lock = threading.Lock()
        stale = sweep_stale()
        if stale:
            log.warning("removed %d shared-memory segment(s) left by a run that was killed: %s", len(stale),
                        ", ".join(stale))
        for i in range(len(self.readers)):
            self.refresh(i)

    def refresh(self, i: int) -> None:
        """(Re)attach to shard i's segment: after it restarted, it has a new one."""
        try:
            shard = self.sup.shards[i]
            # Only a shard on this node is worth a segment (a reader elsewhere cannot map it).
            same_node = ray.get(shard.info.remote(), timeout=60)["node_id"] == self.node
            d = ray.get(shard.share.remote(), timeout=60) if same_node else None
        except (ray.exceptions.RayError, TimeoutError) as e:
            log.warning("shard %d: no shared-memory reads (%s); it is asked over Ray", i, e)
            d = None
        with self._lock:
            old = self.readers[i]
            self.readers[i] = None
            if old is not None:
                if d is None or d.name != old.descriptor.name:
                    old.retire()  # the dead shard's segment: no replica may read it any more
                    old.close()
                    unlink(old.descriptor.name)
                else:
                    old.close()
            if d is not None and d.node_id == self.node:
                self.names.add(d.name)
                self.readers[i] = SharedReader(d)

    def readers_snapshot(self) -> list[SharedReader | None]:
        """The attached readers, one per shard (None where there is none), for API replicas."""
        with self._lock:
            return list(self.readers)

    def _row(self, hub: int):
        i = self.sup.shard_of(hub)
        with self._lock:
            reader = self.readers[i] if i < len(self.readers) else None
            return reader.row(hub) if reader is not None else None

    def hub(self, hub: int) -> dict[str, Any] | None:
        got = self._row(hub)
        if got is None:
            return None
        row, tick = got
        planner = self.sup.planner
        return hub_record(row, self.sup.config, planner.network.up_by_area(max(tick, 0)), hub, tick,
                          versions=planner.versions)

    def service_facts(self, hub: int, srv: str, fuel: str, record: bool = False) -> dict[str, Any] | None:
        got = self._row(hub)
        if got is None:
            return None
        row, tick = got
        planner = self.sup.planner
        return service_facts(row, self.sup.config, planner.network.up_by_area(max(tick, 0)), hub, tick, srv, fuel,
                             record, versions=planner.versions)

    def register_facts(self, shard: int, hubs: np.ndarray, fuel: str) -> dict[str, Any] | None:
        """readings.register_facts of `hubs` (all held by shard `shard`) from its shared memory,
        or None (no segment here, or the shard kept writing: ask the shard)."""
        with self._lock:
            reader = self.readers[shard] if shard < len(self.readers) else None
            got = reader.rows(hubs) if reader is not None else None
        if got is None:
            return None
        view, tick = got
        up = self.sup.planner.network.up_by_area(max(tick, 0))
        return register_facts(cast(Any, view), self.sup.config, up, np.arange(len(hubs)), tick, fuel)

    def call(self, method: str, hub: int, *args: Any) -> Any:
        """The shortcut for a ShardBatcher method, or None."""
        if method == "hubs":
            return self.hub(hub)
        if method == "service_facts_many":
            return self.service_facts(hub, *args)
        return None

    def close(self) -> None:
        with self._lock:
            for r in self.readers:
                if r is not None:
                    r.close()
            self.readers = [None] * len(self.readers)
            for name in self.names:
                unlink(name)
            self.names.clear()
