"""The dashboard's one view of the fleet: a cache of small aggregates fed from the gRPC API.

One feed serves every browser session, so the API's load does not grow with viewers:
- a WatchFleet stream (with a backlog, so charts fill at once) keeps the recent tick records; when
  it ends (the feed fell behind, the run was rewound, the API restarted) it resumes after the last
  tick received, so the charts never silently miss a tick, and a gap the API can no longer fill
  (the ticks left its retained history) is counted in FeedStatus.ticks_missed;
- the operator events are listed once each time that stream (re)connects, then kept current from
  the operations each tick summary carries (those the tick changed), and from the Operation an
  action on this dashboard gets back, so nothing polls them;
- a poller refreshes the clock every second, and the slower things (network plans per region,
  firmware version counts, which cost the API a fleet scan) only when they can have changed:
  after a tick has run (events apply at ticks) or an operator action, and at most every
  SLOW_EVERY_S, so a paused fleet costs the API nothing;
- the cluster (GetCluster: the Ray nodes, the shards on each, the newest shard recoveries) every
  CLUSTER_EVERY_S, a few dozen numbers whatever the fleet;
- the API's reference data (GetFleetCatalog: the names forms offer, the firmware version order)
  is fetched once, and again only when a version count names a version it does not list (a
  rollout introduced it).
Everything kept here is bounded by the number of ticks, areas, regions and operations, never by
the number of hubs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc
from google.longrunning import operations_pb2
from google.protobuf.message import Message

from dashboard.figures import CSPS
from dashboard.reference import Reference
from twin.client import TwinClient, error_info
from twin.generated.csp.v1 import csp_pb2
from twin.generated.fleet.v1 import fleet_pb2

log = logging.getLogger("twin.dashboard")

HISTORY = 480  # ticks kept for the live charts (10 simulated days)
FIRMWARE_KEYS = {"ch_firmware": "CH", "esme_firmware": "ESME", "gsme_firmware": "GSME"}  # group key -> device type
SLOW_EVERY_S = 10.0  # network plans and version counts at most this often
VERSIONS_WANTED_S = 30.0  # version counts (a fleet scan in the shards) only while someone looks
REFERENCE_TIMEOUT_S = 3.0  # GetFleetCatalog is a few kB from memory: a page load waits no longer
REFERENCE_RETRY_S = 5.0  # while the API cannot be reached, a page tries again at most this often
CLUSTER_EVERY_S = 5.0  # GetCluster: nodes come and go in seconds, not faster


def _iso(t) -> str:
    return t.ToDatetime(tzinfo=UTC).isoformat() if t.seconds or t.nanos else ""


def tick_record(s: fleet_pb2.TickSummary) -> dict[str, Any]:
    """The compact, JSON-ready record of one tick: a few dozen numbers whatever the fleet size."""
    alerts: dict[str, int] = {}
    for c in s.csps:
        for k, v in c.alerts.items():
            alerts[k] = alerts.get(k, 0) + v
    return {
        "tick": s.tick,
        "time": _iso(s.time),
        "hubs": s.hubs,
        "meters": s.meters,
        "reachable": sum(c.reachable_hubs for c in s.csps),
        "dark": sum(c.dark_hubs for c in s.csps),
        "hh_at_risk": s.hh_at_risk,
        "hh_lost": s.hh_lost,
        "hh_lost_total": s.hh_lost_total,
        "alerts_total": s.alerts_total,
        "peak_alerts_per_s": s.peak_alerts_per_s,
        "messages": {c.csp: sum(c.messages.values()) for c in s.csps},
        "dark_by_csp": {c.csp: c.dark_hubs for c in s.csps},
        "reachable_by_csp": {c.csp: c.reachable_hubs for c in s.csps},
        "alerts": alerts,
        "capacity": capacity_record(s),
    }


def capacity_record(s: fleet_pb2.TickSummary) -> dict[str, Any] | None:
    """How the network carried the tick (NetworkCapacity: a few hundred numbers, links x classes,
    never the fleet), or None when the summary carries none (the capacity model is off)."""
    return message_record(s.capacity) if s.HasField("capacity") else None


def latest_record(s: fleet_pb2.TickSummary) -> dict[str, Any]:
    """What only the newest tick needs: per-area, per-technology and per-supplier breakdowns."""
    return {
        "tick": s.tick,
        "areas": [{"area_id": a.area_id, "area": a.area_name, "csp": a.csp, "hubs": a.hubs, "dcc_hubs": a.dcc_hubs,
                   "reachable": a.reachable_hubs, "dark": a.dark_hubs, "meters": a.meters, "alerts": a.alerts}
                  for a in s.areas],
        "hubs_by_wan": {c.csp: dict(c.hubs_by_wan) for c in s.csps},
        "supplier_hubs": dict(s.supplier_hubs),
        "dark_by_reason": dict(s.dark_by_reason),
        "prepayment": {"premises": s.prepayment.premises, "emergency_credit": s.prepayment.emergency_credit,
                       "off_supply": s.prepayment.off_supply,
                       "suppliers": {p.supplier: {"premises": p.premises, "emergency_credit": p.emergency_credit,
                                                  "off_supply": p.off_supply} for p in s.prepayment.suppliers}},
    }


# Operations the dashboard leaves to others: one per device-changing Service Request (no page
# shows them), and the CreateBranch operations (the timeline CLI follows those).
UNSHOWN_KINDS = ("service_request", "branch_creation")
_STATE_PREFIX = "OPERATION_STATE_"
_ACTION_PREFIX = "OPERATION_ACTION_"


def message_record(msg: Message) -> dict[str, Any]:
    """A message's fields as plain JSON-ready values, unset ones at their defaults (integers stay
    numbers, unlike MessageToDict's 64-bit strings; nested messages as dicts, repeated as lists)."""
    out: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        value = getattr(msg, f.name)
        if f.message_type is not None:
            out[f.name] = [message_record(v) for v in value] if _repeated(f) else message_record(value)
        else:
            out[f.name] = list(value) if _repeated(f) else value
    return out


def _duration_s(d: Any) -> float:
    return d.seconds + d.nanos / 1e9


def cluster_record(c: fleet_pb2.Cluster) -> dict[str, Any]:
    """The compact record of GetCluster's answer: nodes (with their shards), shards on no node yet,
    the newest recoveries (newest first, seconds as a number, times as ISO text, '' when unset)."""
    def shard(p: fleet_pb2.ShardPlacement) -> dict[str, Any]:
        return {"shard": p.shard, "hubs": p.hubs, "pid": p.pid, "responding": p.responding}

    return {
        "nodes": [{"node_id": n.node_id, "ip": n.ip_address, "alive": n.alive, "cpus": n.cpu_count,
                   "memory_bytes": n.memory_bytes, "shards": [shard(p) for p in n.shards]} for n in c.nodes],
        "unplaced": [shard(p) for p in c.unplaced_shards],
        "recoveries": [{"shard": r.shard, "tick": r.tick, "time": _iso(r.time), "checkpoint_tick": r.checkpoint_tick,
                        "checkpoint_time": _iso(r.checkpoint_time), "replayed_ticks": r.replayed_ticks,
                        "seconds": _duration_s(r.duration), "node_ip": r.node_ip_address, "attempts": r.attempts,
                        "complete_time": _iso(r.complete_time)} for r in c.recoveries],
        "recovery_count": c.recovery_count,
    }


def _repeated(f: Any) -> bool:
    return bool(f.is_repeated) if hasattr(f, "is_repeated") else f.label == f.LABEL_REPEATED


def operation_record(op: operations_pb2.Operation) -> dict[str, Any]:
    """The compact record of one Operation: its typed metadata, the progress of its kind as a
    dict of that kind's fields (FirmwareRolloutProgress, ...), state and actions by name."""
    md = TwinClient.progress(op)
    which = md.WhichOneof("progress")
    return {"name": op.name, "done": op.done, "kind": md.kind,
            "state": fleet_pb2.OperationState.Name(md.state).removeprefix(_STATE_PREFIX), "reason": md.reason,
            "start_tick": md.start_tick, "start_time": _iso(md.start_time), "percent_done": md.percent_done,
            "actions": [fleet_pb2.OperationAction.Name(a).removeprefix(_ACTION_PREFIX).lower()
                        for a in md.allowed_actions],
            "progress": message_record(getattr(md, which)) if which else {},
            "command": json.loads(md.command_json or "{}"),
            "error": op.error.message if op.HasField("error") else ""}


@dataclass
class FeedStatus:
    connected: bool = False
    last_error: str = ""
    ticks_received: int = 0
    last_tick_wall: float = 0.0  # time.time() when the newest tick arrived
    reconnects: int = 0
    thread_failures: int = 0  # a feed thread ended on an unexpected error (it is restarted)
    thread_error: str = ""  # the newest such error
    ticks_missed: int = 0  # ticks the API no longer held when the feed resumed (never silent)


class FleetFeed:
    """Background threads that keep the dashboard's cache fresh. Start with `start()`."""

    def __init__(self, address: str, *, token: str, ca_cert=None, backlog: int = HISTORY):
        self.address = address
        self.token = token
        self.ca_cert = ca_cert
        self.backlog = backlog
        self.client = TwinClient(address, token=token, ca_cert=ca_cert, timeout_s=10.0)
        self.status = FeedStatus()
        self._lock = threading.Lock()
        self._ticks: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._latest: dict[str, Any] = {}
        self._clock: dict[str, Any] = {}
        self._operations: dict[str, dict[str, Any]] = {}  # by name, in the order they were accepted
        self._network: dict[str, Any] = {}
        self._cluster: dict[str, Any] = {}  # cluster_record of the newest GetCluster; {} before the first
        self._versions: dict[str, list[dict[str, Any]]] = {}
        self._versions_wanted = 0.0  # monotonic time a page last asked for version counts
        self._reference: Reference | None = None  # GetFleetCatalog, once fetched
        self._reference_lock = threading.Lock()  # one fetch at a time
        self._reference_tried = -1e9  # monotonic time of the last fetch attempt
        self._changed = threading.Event()  # an operator action: the slow things may have changed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream: Any = None  # the open WatchFleet call (cancelled by stop())
        self._after: int | None = None  # the last tick received: where the stream resumes
        self._listed_after = -1  # the operations were last listed with every tick up to this one

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FleetFeed:
        for target, name in ((self._watch_loop, "feed-watch"), (self._poll_loop, "feed-poll")):
            t = threading.Thread(target=self._guarded, args=(target, name), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def threads_alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _guarded(self, target: Any, name: str) -> None:
        """Run a feed loop; an error it does not expect (not the API's, which it handles) is
        logged with its traceback, counted and shown (healthz, the header), and the loop starts
        again after a second, instead of the thread ending and the page freezing unseen."""
        while not self._stop.is_set():
            try:
                target()
                return
            except Exception as e:
                self.status.thread_failures += 1
                self.status.connected = False
                self.status.thread_error = self.status.last_error = f"{name} failed: {type(e).__name__}: {e}"
                log.exception("dashboard feed thread %s failed; restarting it", name)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.cancel()
        for t in self._threads:
            t.join(timeout=5)
        self.client.channel.close()

    # -- readers (called from Dash callbacks; each returns a copy) --------------------------
    def ticks_since(self, tick: int, limit: int = 120) -> list[dict[str, Any]]:
        """Tick records newer than `tick`, oldest first, at most the newest `limit`."""
        with self._lock:
            out = [r for r in self._ticks if r["tick"] > tick]
        return out[-limit:]

    def last_tick(self) -> int:
        with self._lock:
            return self._ticks[-1]["tick"] if self._ticks else -1

    def latest(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._latest)

    def current(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._ticks[-1]) if self._ticks else {}

    def at(self, tick: int) -> dict[str, Any]:
        """The record of `tick` (the tick a page's frame names) while the feed still holds it;
        else the newest (a rewind took it away, or it is older than the backlog); {} before the
        first tick."""
        with self._lock:
            for r in reversed(self._ticks):  # the frame's tick is nearly always the newest
                if r["tick"] == tick:
                    return dict(r)
            return dict(self._ticks[-1]) if self._ticks else {}

    def clock(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._clock)

    def operations(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._operations.values())

    def update_operation(self, op: operations_pb2.Operation) -> None:
        """Take an Operation the API returned (to an action on this dashboard) into the cache at
        once: with the clock paused no tick would carry the change."""
        self._take([op])

    def _take(self, ops: Any) -> None:
        records = [operation_record(o) for o in ops]
        with self._lock:
            for r in records:
                if r["kind"] not in UNSHOWN_KINDS:
                    self._operations[r["name"]] = r

    def network(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._network)

    def cluster(self) -> dict[str, Any]:
        """The newest cluster_record ({} until the first GetCluster answered)."""
        with self._lock:
            return dict(self._cluster)

    def versions(self) -> dict[str, list[dict[str, Any]]]:
        """Firmware version counts. Each costs the fleet a scan, so they are fetched only while a
        page asks for them (and at most every SLOW_EVERY_S)."""
        with self._lock:
            self._versions_wanted = time.monotonic()
            return dict(self._versions)

    def reference(self) -> Reference:
        """The API's reference data: fetched on first use; while the API cannot be reached, empty
        (forms fall back to text fields) and tried again at most every REFERENCE_RETRY_S, so a
        page load never waits long on it."""
        if self._reference is None and time.monotonic() - self._reference_tried > REFERENCE_RETRY_S:
            self._fetch_reference(again=False)
        return self._reference or Reference()

    def _fetch_reference(self, *, again: bool) -> None:
        """GetFleetCatalog into the cache; `again` fetches even if one is held (a rollout added a
        version)."""
        with self._reference_lock:
            if self._reference is not None and not again:
                return  # another thread fetched it while this one waited
            self._reference_tried = time.monotonic()
            try:
                catalog = self.client.get_fleet_catalog(timeout_s=REFERENCE_TIMEOUT_S)
            except grpc.RpcError as e:
                self.status.last_error = f"GetFleetCatalog: {e.code().name}: {e.details()}"
                return
            self._reference = Reference.from_catalog(catalog)

    def refresh(self) -> None:
        """Poll the clock now (after an action, so the page shows its effect), and the network
        plans and version counts on the poller's next round."""
        self._poll_fast()
        self._changed.set()

    # -- the threads -------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                # Resume after the last tick received; the first time, the newest `backlog`.
                req = fleet_pb2.WatchFleetRequest(backlog=self.backlog, start_after_tick=self._after)
                self._stream = stream = self.client.fleet.WatchFleet(req, metadata=self.client.metadata)
                # The whole list once per (re)connection; from here the ticks carry its changes.
                self._list_operations()
                for s in stream:
                    self._on_summary(s)
                    self.status.connected = True
                    backoff = 0.2
            except grpc.RpcError as e:
                if self._stop.is_set():
                    return
                reason, md = error_info(e)
                if e.code() == grpc.StatusCode.OUT_OF_RANGE and "oldest_start_after_tick" in md:
                    # The ticks after ours left the API's history: say so, and go on from the
                    # oldest it has (the series restarts there).
                    oldest = int(md["oldest_start_after_tick"])
                    with self._lock:
                        self.status.ticks_missed += max(0, oldest - (self._after or 0))
                        self._ticks.clear()
                        self._after = oldest
                    continue
                if reason in ("STREAM_BEHIND", "RUN_REWOUND"):
                    if reason == "RUN_REWOUND":
                        self._rewound_to(int(md["resume_after_tick"]))
                    continue  # resume at once from where the server says
                self.status.connected = False
                self.status.last_error = f"WatchFleet: {e.code().name}: {e.details()}"
                self.status.reconnects += 1
                log.warning("%s; reconnecting in %.1fs", self.status.last_error, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _rewound_to(self, tick: int) -> None:
        """The run went back: keep the ticks up to `tick`, the rest will come again."""
        with self._lock:
            while self._ticks and self._ticks[-1]["tick"] > tick:
                self._ticks.pop()
            self._after = tick

    def _list_operations(self) -> None:
        c = self.client
        # The list shows every tick up to at least this one: the backlog's older changes are
        # already in it, and would only show a past state for a moment.
        listed_after = c.fleet.GetClock(fleet_pb2.GetClockRequest(), **c._kw()).tick - 1
        ops: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            page = c.operations.ListOperations(operations_pb2.ListOperationsRequest(
                filter=" AND ".join(f"kind!={k}" for k in UNSHOWN_KINDS), page_size=1000, page_token=token), **c._kw())
            ops.update((o.name, operation_record(o)) for o in page.operations)
            token = page.next_page_token
            if not token:
                break
        with self._lock:
            self._operations = ops
            self._listed_after = listed_after

    def _on_summary(self, s: fleet_pb2.TickSummary) -> None:
        if s.operations and s.tick > self._listed_after:
            self._take(s.operations)
        rec = tick_record(s)
        with self._lock:
            if self._ticks and rec["tick"] <= self._ticks[-1]["tick"]:
                # A rewound or restarted fleet: start the series again rather than mix two runs.
                if rec["tick"] < self._ticks[-1]["tick"]:
                    self._ticks.clear()
                else:
                    return
            self._ticks.append(rec)
            self._after = rec["tick"]
            self._latest = latest_record(s)
            self.status.ticks_received += 1
            self.status.last_tick_wall = time.time()

    def _poll_loop(self) -> None:
        last_slow = last_versions = last_cluster = -1e9
        network_tick = versions_tick = None  # the tick each was last fetched at
        while not self._stop.is_set():
            try:
                self._poll_fast()
                if self._reference is None:
                    self._fetch_reference(again=False)
                now, tick = time.monotonic(), self.last_tick()
                if self._changed.is_set():  # an operator action: fetch again, whatever the tick
                    self._changed.clear()
                    network_tick = versions_tick = None
                if tick != network_tick and now - last_slow > SLOW_EVERY_S:
                    self._poll_network()
                    last_slow, network_tick = now, tick
                wanted = now - self._versions_wanted < VERSIONS_WANTED_S
                if wanted and ((tick != versions_tick and now - last_versions > SLOW_EVERY_S) or not self._versions):
                    self._poll_versions()
                    last_versions, versions_tick = now, tick
                if now - last_cluster >= CLUSTER_EVERY_S:  # last: an API without GetCluster costs only this
                    last_cluster = now
                    self._poll_cluster()
            except grpc.RpcError as e:
                self.status.last_error = f"poll: {e.code().name}: {e.details()}"
            self._stop.wait(1.0)

    def _poll_fast(self) -> None:
        c = self.client
        clock = c.fleet.GetClock(fleet_pb2.GetClockRequest(), **c._kw())
        state = {fleet_pb2.CLOCK_STATE_RUNNING: "running", fleet_pb2.CLOCK_STATE_FAILED: "failed"}.get(
            clock.state, "paused")
        with self._lock:
            self._clock = {"tick": clock.tick, "time": _iso(clock.time), "state": state, "speed": clock.speed,
                           "error": clock.error}

    def _poll_cluster(self) -> None:
        c = self.client
        rec = cluster_record(c.fleet.GetCluster(fleet_pb2.GetClusterRequest(), **c._kw()))
        with self._lock:
            self._cluster = rec

    def _poll_network(self) -> None:
        c = self.client
        network: dict[str, Any] = {}
        for region in CSPS:
            name = f"regions/{region.lower()}"
            st = c.csp.GetNetworkState(csp_pb2.GetNetworkStateRequest(name=name), **c._kw())
            offs = c.csp.ListSwitchOffs(csp_pb2.ListSwitchOffsRequest(parent=name), **c._kw())
            network[region] = {
                "operator": st.operator,
                "technologies": [{"technology": t.technology, "hubs": t.hubs, "up": t.up, "off_from": _iso(t.off_from)}
                                 for t in st.technologies],
                "switch_offs": [{"technology": o.technology, "off_from": _iso(o.off_from), "on_from": _iso(o.on_from)}
                                for o in offs.switch_offs],
            }
        with self._lock:
            self._network = network

    def _poll_versions(self) -> None:
        c = self.client
        versions = {}
        for key in FIRMWARE_KEYS:
            res = c.fleet.AggregateFleet(fleet_pb2.AggregateFleetRequest(group_by=[key]), **c._kw())
            versions[key] = [{"version": r.labels[key], "hubs": r.hubs} for r in res.rows]
        with self._lock:
            self._versions = versions
        ref = self._reference
        if ref is not None and any(r["version"] != "none" and not ref.knows_version(FIRMWARE_KEYS[k], r["version"])
                                   for k, rows in versions.items() for r in rows):
            self._fetch_reference(again=True)  # a rollout introduced a version: learn where it sorts
