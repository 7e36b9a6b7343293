"""Where a run lives: the Ray nodes (alive or dead, CPUs, memory), the shards on each, and the
newest shard recoveries, for `twin up`'s status lines and the API (FleetService.GetCluster).

Cheap and never stuck: one call to the GCS for the nodes (`ray.nodes()`) and one `info()` per
shard, waited for at most `timeout_s` all together. A shard that does not answer in time (its node
died and Ray is restarting it elsewhere, or it is busy with the ticks in flight, which run before
an `info()` in its queue) is shown where it last answered from, marked not responding; its call
stays in flight and is collected by a later view, so a dead or slow shard never has more than one
call waiting and never holds up the caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray


@dataclass(frozen=True)
class ShardPlace:
    """Shard `index` (`hubs` hubs) as it last answered: its process id and node (`node_id` and
    `node_ip` '' before it first answered). `responding`: it answered this view's call in time."""

    index: int
    hubs: int
    pid: int
    node_id: str
    node_ip: str
    responding: bool


@dataclass(frozen=True)
class NodeView:
    """One Ray node: its id (hex), IP address, alive or dead, logical CPUs, memory in bytes (Ray's
    `memory` resource: what tasks and actors may reserve) and the shards last seen on it, by index."""

    node_id: str
    ip: str
    alive: bool
    cpus: float
    memory_bytes: int
    shards: tuple[ShardPlace, ...]


@dataclass(frozen=True)
class ClusterView:
    """The nodes (alive first, then by IP), shards on no known node (`unplaced`: never answered
    yet), the newest recoveries (StepPipeline.recoveries records, newest last, each with
    `wall_time`, the Unix time it completed, added) and how many there were in all."""

    nodes: tuple[NodeView, ...]
    unplaced: tuple[ShardPlace, ...] = ()
    recoveries: tuple[Mapping[str, Any], ...] = ()
    recovery_count: int = 0

    @property
    def alive(self) -> tuple[NodeView, ...]:
        return tuple(n for n in self.nodes if n.alive)

    def shards_per_node(self) -> dict[str, int]:
        """{node IP: shards on it} over the nodes holding any, alive or not."""
        return {n.ip: len(n.shards) for n in self.nodes if n.shards}


def build_view(nodes: Iterable[Mapping[str, Any]], places: Sequence[ShardPlace], *,
               recoveries: Iterable[Mapping[str, Any]] = (), recovery_count: int = 0) -> ClusterView:
    """The view from `ray.nodes()` records (NodeID, NodeManagerAddress, Alive, Resources) and the
    shards' places. A node Ray lists twice (a node restarted on the same address has a new id)
    is two nodes; a shard goes to the node of its id, else to the alive node of its IP."""
    recs = list(nodes)
    by_id = {str(n["NodeID"]): n for n in recs}
    alive_by_ip = {str(n["NodeManagerAddress"]): str(n["NodeID"]) for n in recs if n.get("Alive")}
    on: dict[str, list[ShardPlace]] = {k: [] for k in by_id}
    unplaced: list[ShardPlace] = []
    for p in places:
        node = p.node_id if p.node_id in by_id else alive_by_ip.get(p.node_ip, "")
        (on[node] if node else unplaced).append(p)
    out = []
    for node_id, n in by_id.items():
        res = n.get("Resources") or {}
        out.append(NodeView(node_id=node_id, ip=str(n["NodeManagerAddress"]), alive=bool(n.get("Alive")),
                            cpus=float(res.get("CPU", 0.0)), memory_bytes=int(res.get("memory", 0)),
                            shards=tuple(sorted(on[node_id], key=lambda s: s.index))))
    out.sort(key=lambda n: (not n.alive, n.ip, n.node_id))
    return ClusterView(nodes=tuple(out), unplaced=tuple(unplaced), recoveries=tuple(recoveries),
                       recovery_count=recovery_count)


class ShardLocator:
    """Finds the shards' nodes for a ClusterView, with at most one `info()` call in flight per
    shard. Thread-safe (the API's threads and `twin up`'s status loop share one)."""

    def __init__(self, hubs: Sequence[int]) -> None:
        self._hubs = list(hubs)  # each shard's hubs, known from the layout before it answers
        self._known: dict[int, dict[str, Any]] = {}  # shard -> its newest info()
        self._pending: dict[int, ray.ObjectRef] = {}  # shard -> its info() call not yet collected
        self._lock = threading.Lock()

    def places(self, shards: Sequence[Any], *, timeout_s: float) -> list[ShardPlace]:
        """Each shard's place, asking every shard with no call in flight and waiting at most
        `timeout_s` seconds for the answers."""
        with self._lock:
            for i, shard in enumerate(shards):
                if i not in self._pending:
                    self._pending[i] = shard.info.remote()
            refs = list(self._pending.values())
            done = set(ray.wait(refs, num_returns=len(refs), timeout=max(timeout_s, 0.0), fetch_local=True)[0]
                       if refs else [])
            answered: set[int] = set()
            for i, ref in list(self._pending.items()):
                if ref not in done:
                    continue
                del self._pending[i]
                try:
                    self._known[i] = ray.get(ref, timeout=0)
                    answered.add(i)
                except ray.exceptions.RayError:
                    pass  # it died: the next view asks its restarted process
            out = []
            for i in range(len(shards)):
                info = self._known.get(i, {})
                out.append(ShardPlace(index=i, hubs=int(info.get("hubs", self._hubs[i])), pid=int(info.get("pid", 0)),
                                      node_id=str(info.get("node_id", "")), node_ip=str(info.get("node_ip", "")),
                                      responding=i in answered))
            return out


def cluster_view(locator: ShardLocator, shards: Sequence[Any], recoveries: Iterable[Mapping[str, Any]],
                 recovery_count: int, *, timeout_s: float = 1.0, newest: int = 20) -> ClusterView:
    """The run's ClusterView now: the nodes from the GCS, the shards' places (at most `timeout_s`
    waited), and the newest `newest` recoveries, each with `wall_time` (Unix seconds) derived from
    its monotonic `done_at`."""
    places = locator.places(shards, timeout_s=timeout_s)
    offset = time.time() - time.monotonic()
    recent = list(recoveries)[-newest:] if newest > 0 else []
    return build_view(ray.nodes(), places, recovery_count=recovery_count,
                      recoveries=[{**r, "wall_time": float(r["done_at"]) + offset} for r in recent])
