"""The story lines of `twin up`'s terminal: one plain line per real change, beside the periodic
status line. An operation accepted, started, at its milestones, paused, resumed and ended (with
its reason), and alert peaks (a half hour whose device alerts stand well above the recent level,
by kind).

The source is the tick summary itself: each carries the operations its tick changed (views built
by the engine, `TickSummary.operations`, service requests left out) and its alert counts by kind.
So a tick costs the operations that changed at it plus one small array, never anything per
operation ever accepted or per hub; what is remembered per operation is dropped when it ends."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.model.catalog import AlertKind
from twin.model.config import FleetConfig
from twin.model.ops.progress import (
    BaseStationFailureProgress,
    ChurnCampaignProgress,
    CspIncidentProgress,
    FieldProgrammeProgress,
    FirmwareRolloutProgress,
    MhhsMigrationProgress,
    NetworkSwitchOffProgress,
    OnDemandReadsProgress,
    OperationState,
    PowerOutageProgress,
    Progress,
    SupplierFailureProgress,
    SupplierSwitchProgress,
)
from twin.model.timeutil import format_instant
from twin.reporting.summary import ALERT_LABELS
from twin.services.convert import command_view

if TYPE_CHECKING:
    from twin.engine.placement import ClusterView

# Progress told at each quarter (the end is told by the DONE line).
MILESTONES = 4
# An alert peak: a half hour with at least PEAK_FACTOR times the recent mean and PEAK_FLOOR more
# alerts than it (so a fleet that sends 0 or 2 alerts a half hour does not call 8 a peak). The
# recent mean is over the last RECENT_TICKS half hours that were not peaks themselves, so a long
# storm does not become the level it is measured against.
PEAK_FACTOR = 3.0
PEAK_FLOOR = 20
RECENT_TICKS = 48
# Within one peak (consecutive peak half hours), a new line only when the count has doubled since
# the last one told: a storm says how it grows, not every half hour of it.
ESCALATION = 2.0
# An operation first seen running more than this many ticks after its start was running before
# this process saw it (a resumed run): said as "running since", not "started". One first seen
# pending that starts within as many ticks (an event for now, waiting on the ticks already in
# flight) is told once, when it starts, not as accepted and then started.
_STARTED_LATELY = 8


def _n(x: float) -> str:
    return f"{x:,.0f}"


def describe_command(command: Mapping[str, Any]) -> str:
    """What an accepted command asks, in a few words ("London, 50% for 60 min"), from its model
    dict (`Command.to_dict()`: codes for areas, regions, suppliers and technologies); "" for a
    kind with nothing to add."""
    c = command_view(dict(command))
    kind = c.get("type")
    if kind == "power_outage":
        return f"{c.get('area_name', c.get('area'))}, {float(c['fraction']):.0%} for {float(c['duration_min']):g} min"
    if kind == "firmware_rollout":
        scope = _scope(c)
        if c.get("hubs"):
            scope = f" on {len(c['hubs']):,} hub(s)"
        hold = ", activation held" if c.get("hold_activation") else ""
        return f"{c['manufacturer']} {c['model']} {c['device']} to {c['target_version']}{scope}{hold}"
    if kind == "supplier_switch":
        return f"hub {c['hub']} ({c['fuel']}) to {c['to_supplier']}"
    if kind == "churn_campaign":
        return f"{int(c['switches_per_month']):,} switches a month for {float(c['days']):g} days"
    if kind == "supplier_failure":
        return f"{c['supplier']} fails; customers to {c['solr']}, up to {int(c['daily_cap']):,} a day"
    if kind == "network_switch_off":
        return f"{c['technology']} off in {c['region']}"
    if kind == "swap_programme":
        first = f", {c['prioritise']} first" if c.get("prioritise") else ""
        return f"{c['region']}, {int(c['installs_per_day']):,} installs a day for {float(c['days']):g} days{first}"
    if kind == "vwan_fallback":
        return f"{c['region']}, {int(c['onboard_per_day']):,} onboarded a day for {float(c['days']):g} days"
    if kind == "base_station_failure":
        return f"North cells {', '.join(str(x) for x in c['cells'])} for {float(c['duration_min']):g} min"
    if kind == "csp_incident":
        return f"{c['region']} for {float(c['duration_min']):g} min"
    if kind == "mhhs_migration":
        return (f"{float(c['share']):.0%} of ESMEs{_scope(c)} in {int(c['waves'])} waves "
                f"{float(c['spacing_days']):g} days apart")
    if kind == "on_demand_reads":
        areas = f" in {', '.join(c['areas'])}" if c.get("areas") else ""
        return (f"{float(c['share']):.0%} of meters{_scope(c)}{areas} every {float(c['interval_min']):g} min "
                f"for {float(c['duration_min']):g} min")
    return ""


def _scope(c: Mapping[str, Any]) -> str:
    parts = []
    if c.get("regions"):
        parts.append(" in " + ", ".join(c["regions"]))
    if c.get("suppliers"):
        parts.append(" of " + ", ".join(c["suppliers"]))
    return "".join(parts)


def progress_text(p: Progress) -> str:
    """An operation's figures in a few words ("1,200 of 5,000 devices activated, 12 failed"); ""
    for a kind whose progress is only its state."""
    if isinstance(p, FirmwareRolloutProgress):
        bad = f", {_n(p.failed)} failed" + (f", {_n(p.bricked)} bricked" if p.bricked else "")
        return f"{_n(p.activated)} of {_n(p.targeted)} devices activated{bad}"
    if isinstance(p, ChurnCampaignProgress):
        return f"{_n(p.switches)} of {_n(p.planned)} switches made"
    if isinstance(p, SupplierFailureProgress):
        return f"{_n(p.moved)} of {_n(p.customers)} customers moved"
    if isinstance(p, FieldProgrammeProgress):
        return f"{_n(p.done)} premises done, {_n(p.eligible)} still eligible"
    if isinstance(p, MhhsMigrationProgress):
        return f"wave {p.waves_done} of {p.waves}, {_n(p.migrated)} of {_n(p.targeted)} ESMEs migrated"
    if isinstance(p, OnDemandReadsProgress):
        return f"{_n(p.answered)} of {_n(p.planned)} reads answered, {_n(p.failed)} failed"
    if isinstance(p, PowerOutageProgress):
        return f"power cut at {_n(p.premises_cut)} of {_n(p.premises_in_area)} premises in the area"
    if isinstance(p, BaseStationFailureProgress):
        return f"{_n(p.hubs_affected)} hubs without their base station"
    if isinstance(p, CspIncidentProgress):
        return f"{_n(p.observed.get('hubs_cut_off', 0))} hubs cut off from the network"
    if isinstance(p, NetworkSwitchOffProgress):
        if p.observed.get("hubs_cut_off"):
            return f"{_n(p.observed['hubs_cut_off'])} hubs cut off"
        return f"{_n(p.observed.get('hubs_on_network', 0))} hubs still on the network"
    if isinstance(p, SupplierSwitchProgress):
        return (f"{_n(p.switches)} switched, {_n(p.withdrawn)} withdrawn"
                if p.switches or p.withdrawn else "")
    return ""


@dataclass
class _Seen:
    """What was last told of one operation."""

    state: OperationState
    milestone: int = 0  # quarters told
    wave: int = -1  # a rollout's wave, an MHHS migration's waves applied
    hit: bool = False  # an outage's cut or a base-station failure's hubs told
    what: str = ""  # what it asks, until told with its start


def _fraction_kind(p: Progress) -> bool:
    """Kinds whose percent_done moves with their work (the others are 0 until DONE)."""
    return type(p).fraction is not Progress.fraction


class Story:
    """Turns tick summaries into story lines. `observe` is a tick listener (the clock's thread);
    `drain` hands the lines over to whoever prints them (another thread). Each line is one plain
    line starting with the simulated time at the end of its tick, as the status line does."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self._lines: deque[str] = deque()
        self._lock = threading.Lock()  # one observer at a time: the state below is not shared
        self._seen: dict[str, _Seen] = {}  # operations told of and not ended
        self._recent: deque[int] = deque(maxlen=RECENT_TICKS)
        self._recent_sum = 0
        self._peak_told = 0  # alerts told in the current peak (0: not in a peak)
        self._last_tick = -1

    def drain(self) -> list[str]:
        """The lines written since the last drain, oldest first."""
        out = []
        while self._lines:
            out.append(self._lines.popleft())
        return out

    @property
    def following(self) -> int:
        """Operations told of that have not ended: what the story holds per operation."""
        return len(self._seen)

    def observe(self, s: Any) -> None:
        """Read one tick summary (`twin.model.summary.TickSummary`: its `tick`, `operations` views
        and `alerts` counts, CSP x AlertKind)."""
        with self._lock:
            if s.tick <= self._last_tick:
                # A rewind: what was told belongs to a future that is gone; start afresh.
                self._seen.clear()
                self._recent.clear()
                self._recent_sum = 0
                self._peak_told = 0
            self._last_tick = s.tick
            when = f"{self.config.time_of(s.tick + 1):%Y-%m-%d %H:%M}"
            for view in s.operations:
                try:
                    lines = self.operation_lines(view, s.tick)
                except (KeyError, TypeError, ValueError) as e:
                    # A view this module cannot tell must never stop the clock (this is its thread).
                    lines = [f"{view.get('name', '?')}: not told ({type(e).__name__}: {e})"]
                for text in lines:
                    self._lines.append(f"{when}  {text}")
            peak = self.alert_line(np.asarray(s.alerts).sum(axis=0))
            if peak:
                self._lines.append(f"{when}  {peak}")

    # -- operations --------------------------------------------------------------------------------
    def operation_lines(self, view: Mapping[str, Any], tick: int) -> list[str]:
        """The lines one changed operation's view (`twin.engine.operations.operation_view`) tells
        at `tick`: none when nothing a person follows changed (its counters moved within a quarter)."""
        md = view["metadata"]
        name, kind = view["name"], md["kind"]
        state = OperationState(md["state"])
        p: Progress = md["progress"]
        head = f"{name} {kind}"
        seen = self._seen.get(name)
        out: list[str] = []
        if seen is None:
            what = describe_command(md["command"])
            what = f": {what}" if what else ""
            start = md["start_tick"]
            if state == OperationState.PENDING and start - tick <= _STARTED_LATELY:
                self._seen[name] = _Seen(state=state, what=what)
                return out
            if state == OperationState.PENDING:
                out.append(f"{head} accepted{what}; starts {self.config.time_of(start):%Y-%m-%d %H:%M}")
            elif not state.done and tick - start > _STARTED_LATELY:
                out.append(f"{head} {state.value.lower()} since {self.config.time_of(start):%Y-%m-%d %H:%M}{what}")
            elif not state.done:
                out.append(f"{head} started{what}")
            else:
                out.append(f"{head} accepted{what}")
            seen = self._seen[name] = _Seen(state=state)
        elif seen.state == OperationState.PENDING and state in (OperationState.RUNNING, OperationState.PAUSED):
            out.append(f"{head} started{seen.what}")
            seen.what = ""
        elif seen.state == OperationState.PENDING and state.done and seen.what:
            out.append(f"{head} accepted{seen.what}")  # and ended before it started: told below
        elif seen.state == OperationState.RUNNING and state == OperationState.PAUSED:
            out.append(f"{head} PAUSED" + (f" at {md['percent_done']:.0f}%" if _fraction_kind(p) else ""))
        elif seen.state == OperationState.PAUSED and state == OperationState.RUNNING:
            out.append(f"{head} resumed")
        if state.done:
            self._seen.pop(name, None)
            reason = md.get("reason") or ""
            figures = progress_text(p)
            if isinstance(p, PowerOutageProgress) and state == OperationState.DONE:
                figures = f"power back at the {_n(p.premises_cut)} premises cut"
            tail = "; ".join(x for x in (reason, figures) if x)
            out.append(f"{head} {state.value}" + (f": {tail}" if tail else ""))
            return out
        seen.state = state
        out.extend(self._milestones(head, seen, p, float(md["percent_done"])))
        return out

    def _milestones(self, head: str, seen: _Seen, p: Progress, percent: float) -> list[str]:
        out = []
        if isinstance(p, FirmwareRolloutProgress) and p.waves and p.current_wave > seen.wave:
            seen.wave = p.current_wave
            w = p.waves[min(p.current_wave, len(p.waves) - 1)]
            out.append(f"{head} wave {p.current_wave + 1} of {len(p.waves)} started: up to {w.share:.0%} of "
                       f"{_n(p.targeted)} devices")
        elif isinstance(p, MhhsMigrationProgress):
            if p.waves_done > max(seen.wave, 0):
                seen.wave = p.waves_done
                out.append(f"{head} {progress_text(p)}")
            return out
        elif isinstance(p, PowerOutageProgress | BaseStationFailureProgress) and not seen.hit:
            if (p.premises_cut if isinstance(p, PowerOutageProgress) else p.hubs_affected) > 0:
                seen.hit = True
                out.append(f"{head} {progress_text(p)}")
            return out
        if _fraction_kind(p):
            quarter = min(MILESTONES - 1, math.floor(percent / 100 * MILESTONES + 1e-9))
            if quarter > seen.milestone:
                seen.milestone = quarter
                text = progress_text(p)
                out.append(f"{head} {100 * quarter // MILESTONES}% done" + (f": {text}" if text else ""))
        return out

    # -- alerts ----------------------------------------------------------------------------------
    def alert_line(self, by_kind: np.ndarray) -> str:
        """The line for one tick's device alerts (counts by AlertKind), "" unless it is a peak: at
        least PEAK_FACTOR times the recent mean and PEAK_FLOOR above it, the first tick of a peak
        or one that doubles what was last told of it."""
        total = int(by_kind.sum())
        mean = self._recent_sum / len(self._recent) if self._recent else 0.0
        if total < max(PEAK_FACTOR * mean, mean + PEAK_FLOOR):
            self._peak_told = 0
            if len(self._recent) == self._recent.maxlen:
                self._recent_sum -= self._recent[0]
            self._recent.append(total)
            self._recent_sum += total
            return ""
        if self._peak_told and total < ESCALATION * self._peak_told:
            return ""
        self._peak_told = total
        kinds = sorted(((int(by_kind[k]), k) for k in AlertKind if by_kind[k] > 0), reverse=True)
        parts = ", ".join(f"{ALERT_LABELS[k]} {n:,}" for n, k in kinds)
        level = (f"{total / mean:,.0f}x the recent level of {mean:,.1f} a half hour" if mean > 0
                 else "the recent level: none")
        return f"ALERT PEAK {total:,} device alerts in half an hour ({parts}); {level}"


def recovery_line(config: FleetConfig, r: dict[str, Any]) -> str:
    """The status line of one shard recovery (a record of FleetSupervisor.recoveries). Like the
    story's lines it leaves out the word "tick", which marks the periodic status lines."""
    at = config.time_of(r["tick"] + 1).strftime("%Y-%m-%d %H:%M")
    base = ("rebuilt from the seed" if r["from_tick"] < 0
            else f"restored from the checkpoint of {format_instant(config.time_of(r['from_tick'] + 1))}")
    where = f" on {r['node_ip']}" if r.get("node_ip") else ""
    return (f"{at}  shard {r['shard']} RECOVERED: its process died; {base}{where}, caught up "
            f"{r['replayed']} half-hour(s) in {r['seconds']:.1f} s")


def _shards(n: int) -> str:
    return f"{n} shard{'s' if n != 1 else ''}"


def node_lines(before: ClusterView | None, after: ClusterView, at: datetime) -> list[str]:
    """The lines for nodes that left or joined the cluster between two views (none for the first
    view, `before` None); `at` is the simulated time now. A node that left is named with the
    shards it held, which Ray restarts elsewhere; their recoveries get lines of their own."""
    if before is None:
        return []
    was = {n.node_id: n for n in before.nodes if n.alive}
    now = {n.node_id: n for n in after.nodes}
    stamp = f"{at:%Y-%m-%d %H:%M}  node"
    out = []
    for node_id, n in was.items():
        gone = now.get(node_id)
        if gone is None or not gone.alive:
            held = len(gone.shards if gone is not None and gone.shards else n.shards)
            what = f"{_shards(held)} restarting elsewhere" if held else "it held no shards"
            out.append(f"{stamp} {n.ip} LOST: {what}")
    for node_id, n in now.items():
        if n.alive and node_id not in was:
            out.append(f"{stamp} {n.ip} joined: {n.cpus:g} CPUs, {n.memory_bytes / 2**30:.1f} GiB")
    return out


def cluster_line(view: ClusterView, at: datetime) -> str | None:
    """The periodic cluster line: nodes alive and shards per node (those not answering, as on a
    dead node, counted); None on a single machine (one node, never another), which says nothing."""
    if len(view.nodes) < 2:
        return None
    per = ", ".join(f"{n.ip} {len(n.shards)}" + ("" if n.alive else " (dead)") for n in view.nodes if n.shards)
    quiet = sum(not p.responding for n in view.nodes for p in n.shards) + len(view.unplaced)
    return (f"{at:%Y-%m-%d %H:%M}  cluster: {len(view.alive)} of {len(view.nodes)} nodes alive; shards per node: "
            f"{per or 'none placed'}" + (f"; {_shards(quiet)} not answering" if quiet else "")
            + (f"; {view.recovery_count} recover{'ies' if view.recovery_count != 1 else 'y'} so far"
               if view.recovery_count else ""))


def placement_line(shards: int, per_node: Mapping[str, int]) -> str | None:
    """Which machine runs how many of the run's `shards` ({node IP: shards}), said once the
    fleet is built: "3 shards on 3 nodes: 10.0.0.5 (1), 10.0.0.6 (1), 10.0.0.7 (1)". None on one
    machine, where it says nothing."""
    if len(per_node) <= 1:
        return None
    return f"{shards} shards on {len(per_node)} nodes: " + ", ".join(f"{ip} ({n})" for ip, n in per_node.items())
