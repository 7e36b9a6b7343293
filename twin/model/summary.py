"""Tick summaries: the small, integer-only record a shard returns for each tick, how summaries of
several shards merge (sums, so any shard layout gives the same fleet summary), and the fleet-level
finishing step (background traffic drawn from the merged reachable-meter counts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.model.catalog import (
    AREA_CSP,
    AREAS,
    FAULT_LABEL,
    N_ALERT_KINDS,
    N_AREA_CODES,
    N_CSP,
    N_LINKS,
    N_MESSAGE_TYPES,
    N_WAN,
    SUPPLIERS,
    WAN_LABEL,
    AlertKind,
    Csp,
    MessageType,
    WanTech,
)
from twin.model.config import FleetConfig
from twin.model.params import (
    DAYS_PER_MONTH,
    HALF_HOURS_PER_DAY,
    NORTH_BASE_STATIONS,
    TICK_SECONDS,
    TrafficParams,
    once_per_params,
)
from twin.model.rng import Purpose, fleet_rng
from twin.model.state import N_DARK_AGE

# Dark hubs by reason: one column per Fault bit, then "network off" (region x technology down).
DARK_REASONS: tuple[str, ...] = (*FAULT_LABEL.values(), "network switched off")
N_DARK_REASONS = len(DARK_REASONS)
N_SUPPLIERS = len(SUPPLIERS)
# The network's queues see a tick's arrivals in one-minute bins (twin.model.capacity).
BIN_SECONDS = 60
N_BINS = TICK_SECONDS // BIN_SECONDS


@dataclass
class TickSummary:
    """What happened in one tick, per CSP where it matters. All counts are integers."""

    tick: int
    messages: np.ndarray = field(default_factory=lambda: np.zeros((N_CSP, N_MESSAGE_TYPES), np.int64))
    alerts: np.ndarray = field(default_factory=lambda: np.zeros((N_CSP, N_ALERT_KINDS), np.int64))
    alerts_undelivered: int = 0
    # Alerts sent per second inside the tick, sparse: seconds (0..1799) and counts.
    alert_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    alert_second_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Arrivals at the network's queues: messages by link (CSP x WAN technology, twin.model.catalog
    # link_of) and type, the alerts among them by link and minute of the tick, and messages by
    # North base station (long-range radio hubs only).
    link_messages: np.ndarray = field(default_factory=lambda: np.zeros((N_LINKS, N_MESSAGE_TYPES), np.int64))
    link_alert_minutes: np.ndarray = field(default_factory=lambda: np.zeros((N_LINKS, N_BINS), np.int64))
    bs_messages: np.ndarray = field(default_factory=lambda: np.zeros(NORTH_BASE_STATIONS, np.int64))
    dcc_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_CSP, np.int64))
    reachable_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_CSP, np.int64))
    reachable_meters: np.ndarray = field(default_factory=lambda: np.zeros(N_CSP, np.int64))
    reachable_meters_by_wan: np.ndarray = field(default_factory=lambda: np.zeros((N_CSP, N_WAN), np.int64))
    off_dcc_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_CSP, np.int64))
    meters: np.ndarray = field(default_factory=lambda: np.zeros(N_CSP, np.int64))
    dark_by_reason: np.ndarray = field(default_factory=lambda: np.zeros((N_CSP, N_DARK_REASONS), np.int64))
    hh_lost: int = 0  # half-hourly periods lost this tick (all meters)
    hh_at_risk: int = 0  # unread periods on dark hubs' meters (refreshed daily per hub)
    dark_age: np.ndarray = field(default_factory=lambda: np.zeros(N_DARK_AGE, np.int64))
    hubs_by_wan: np.ndarray = field(default_factory=lambda: np.zeros((N_CSP, N_WAN), np.int64))
    supplier_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_SUPPLIERS + 1, np.int64))
    gas_supplier_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_SUPPLIERS + 1, np.int64))
    # The same by DNO area (index = area id): what the map shows, 24 numbers each whatever the fleet.
    area_dcc_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    area_off_dcc_hubs: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    area_reachable: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    area_meters: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    area_alerts: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    # Prepayment premises, those on emergency credit and those off supply for credit (disabled or
    # armed), by electricity supplier (index = supplier code) and by DNO area; top-ups this tick.
    prepay_supplier: np.ndarray = field(default_factory=lambda: np.zeros(N_SUPPLIERS + 1, np.int64))
    credit_ec_supplier: np.ndarray = field(default_factory=lambda: np.zeros(N_SUPPLIERS + 1, np.int64))
    credit_off_supplier: np.ndarray = field(default_factory=lambda: np.zeros(N_SUPPLIERS + 1, np.int64))
    area_prepay: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    area_credit_ec: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    area_credit_off: np.ndarray = field(default_factory=lambda: np.zeros(N_AREA_CODES, np.int64))
    prepay_topups: int = 0
    # Operation reports by operation name: integer counters, and per-block arrays under keys
    # starting "block" (a shard reports only its own blocks, so merging concatenates them).
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each alert sent (for alert subscriptions): hub id, kind, second, area, suppliers. Not part of
    # the figures (to_dict); a shard sends only its own hubs' alerts.
    alert_events: dict[str, np.ndarray] = field(default_factory=dict)
    peak_alerts_per_s: int = 0  # set by finish()
    # Running totals since the run began (hh_lost, alerts), set by whoever records the fleet's
    # summaries in order; never merged.
    totals: dict[str, int] = field(default_factory=dict)
    # The operations whose state or progress changed at this tick, as views (see
    # twin.engine.operations.operation_view), set by the engine once the planner has observed
    # the merged summary; not part of the figures (to_dict), never merged.
    operations: list[dict[str, Any]] = field(default_factory=list)
    # How the network carried this tick (twin.model.capacity.CapacityReport), set by the fleet
    # planner when it observes the merged summary; never merged.
    capacity: Any = None
    # The shard recoveries that completed during this tick (a shard's process died; it was
    # restored from a checkpoint and caught up), as the engine records them: dicts with shard,
    # from_tick, replayed, seconds, node_ip, ... Set by the engine; not part of the figures
    # (to_dict: a run with a recovery has the same figures as one without), never merged.
    recoveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hubs(self) -> int:
        return int(self.dcc_hubs.sum() + self.off_dcc_hubs.sum())

    @property
    def dark_hubs(self) -> np.ndarray:
        return self.dcc_hubs - self.reachable_hubs

    @property
    def total_messages(self) -> int:
        return int(self.messages.sum())

    def area_rows(self) -> list[dict[str, Any]]:
        """One row per DNO area: hubs, reachable, dark, meters and alerts."""
        return [{"area_id": a.id, "area": a.name, "csp": Csp(AREA_CSP[a.id]).name.title(),
                 "hubs": int(self.area_dcc_hubs[a.id] + self.area_off_dcc_hubs[a.id]),
                 "dcc_hubs": int(self.area_dcc_hubs[a.id]), "reachable_hubs": int(self.area_reachable[a.id]),
                 "dark_hubs": int(self.area_dcc_hubs[a.id] - self.area_reachable[a.id]),
                 "meters": int(self.area_meters[a.id]), "alerts": int(self.area_alerts[a.id]),
                 "prepay_hubs": int(self.area_prepay[a.id]), "emergency_credit": int(self.area_credit_ec[a.id]),
                 "off_supply_for_credit": int(self.area_credit_off[a.id])} for a in AREAS]

    def prepayment(self) -> dict[str, Any]:
        """Prepayment premises, on emergency credit and off supply for credit: fleet and per supplier."""
        return {
            "premises": int(self.prepay_supplier.sum()),
            "emergency_credit": int(self.credit_ec_supplier.sum()),
            "off_supply": int(self.credit_off_supplier.sum()),
            "topups": self.prepay_topups,
            "by_supplier": {s.name: {"premises": int(self.prepay_supplier[k]),
                                     "emergency_credit": int(self.credit_ec_supplier[k]),
                                     "off_supply": int(self.credit_off_supplier[k])}
                            for k, s in enumerate(SUPPLIERS, 1) if self.prepay_supplier[k]},
        }

    def to_dict(self) -> dict[str, Any]:
        csps = [c.name.title() for c in Csp]
        return {
            "tick": self.tick,
            "hubs": self.hubs,
            "meters": int(self.meters.sum()),
            "messages": {c: {m.name: int(self.messages[i, m]) for m in MessageType} for i, c in enumerate(csps)},
            "alerts": {c: {k.name: int(self.alerts[i, k]) for k in AlertKind} for i, c in enumerate(csps)},
            "alerts_undelivered": self.alerts_undelivered,
            "peak_alerts_per_s": self.peak_alerts_per_s,
            "dcc_hubs": dict(zip(csps, self.dcc_hubs.tolist(), strict=True)),
            "reachable_hubs": dict(zip(csps, self.reachable_hubs.tolist(), strict=True)),
            "dark_hubs": dict(zip(csps, self.dark_hubs.tolist(), strict=True)),
            "off_dcc_hubs": dict(zip(csps, self.off_dcc_hubs.tolist(), strict=True)),
            "dark_by_reason": {r: int(self.dark_by_reason[:, i].sum()) for i, r in enumerate(DARK_REASONS)},
            "hh_lost": self.hh_lost,
            "hh_at_risk": self.hh_at_risk,
            "dark_age": self.dark_age.tolist(),
            "hubs_by_wan": {c: {WAN_LABEL[w]: int(self.hubs_by_wan[i, w]) for w in WanTech}
                            for i, c in enumerate(csps)},
            "supplier_hubs": {s.name: int(self.supplier_hubs[k]) for k, s in enumerate(SUPPLIERS, 1)
                              if self.supplier_hubs[k]},
            "areas": self.area_rows(),
            "prepayment": self.prepayment(),
            "ops": {name: {k: v for k, v in rep.items() if not k.startswith("block")}
                    for name, rep in sorted(self.ops.items())},
        } | ({"capacity": self.capacity.to_dict()} if self.capacity is not None else {})


def merge(parts: list[TickSummary]) -> TickSummary:
    """Sum shard summaries of the same tick."""
    ticks = {p.tick for p in parts}
    if len(ticks) != 1:
        raise ValueError(f"cannot merge summaries of different ticks: {sorted(ticks)}")
    out = TickSummary(tick=parts[0].tick)
    for p in parts:
        out.messages += p.messages
        out.link_messages += p.link_messages
        out.link_alert_minutes += p.link_alert_minutes
        out.bs_messages += p.bs_messages
        out.reachable_meters_by_wan += p.reachable_meters_by_wan
        out.alerts += p.alerts
        out.alerts_undelivered += p.alerts_undelivered
        out.dcc_hubs += p.dcc_hubs
        out.reachable_hubs += p.reachable_hubs
        out.reachable_meters += p.reachable_meters
        out.off_dcc_hubs += p.off_dcc_hubs
        out.meters += p.meters
        out.dark_by_reason += p.dark_by_reason
        out.hh_lost += p.hh_lost
        out.hh_at_risk += p.hh_at_risk
        out.dark_age += p.dark_age
        out.hubs_by_wan += p.hubs_by_wan
        out.supplier_hubs += p.supplier_hubs
        out.gas_supplier_hubs += p.gas_supplier_hubs
        out.area_dcc_hubs += p.area_dcc_hubs
        out.area_off_dcc_hubs += p.area_off_dcc_hubs
        out.area_reachable += p.area_reachable
        out.area_meters += p.area_meters
        out.area_alerts += p.area_alerts
        out.prepay_supplier += p.prepay_supplier
        out.credit_ec_supplier += p.credit_ec_supplier
        out.credit_off_supplier += p.credit_off_supplier
        out.area_prepay += p.area_prepay
        out.area_credit_ec += p.area_credit_ec
        out.area_credit_off += p.area_credit_off
        out.prepay_topups += p.prepay_topups
        for name, rep in p.ops.items():
            acc = out.ops.setdefault(name, {})
            for k, v in rep.items():
                if k.startswith("block"):
                    acc[k] = v if k not in acc else np.concatenate([acc[k], v])
                else:
                    acc[k] = acc.get(k, 0) + v
    for rep in out.ops.values():
        # Blocks arrive per shard; sort them by block id so the merge is layout-independent.
        if "blocks" in rep:
            order = np.argsort(rep["blocks"], kind="stable")
            for k in rep:
                if k.startswith("block"):
                    rep[k] = rep[k][order]
    events = [p.alert_events for p in parts if p.alert_events]
    if events:
        out.alert_events = {k: np.concatenate([e[k] for e in events]) for k in events[0]}
    secs = np.concatenate([p.alert_seconds for p in parts])
    counts = np.concatenate([p.alert_second_counts for p in parts])
    if secs.size:
        dense = np.bincount(secs, weights=counts, minlength=1800).astype(np.int64)
        nz = np.nonzero(dense)[0]
        out.alert_seconds, out.alert_second_counts = nz, dense[nz]
    return out


def background_rates(config: FleetConfig) -> np.ndarray:
    """Expected background messages per reachable meter per tick, by message type (mean over
    day): the month's messages beside the daily read bursts (drawn per hub), split by the
    background mix, and the month's device alerts (TrafficParams)."""
    return _background_rates(config.params.traffic)


def _background_rates(tp: TrafficParams) -> np.ndarray:
    per_tick = 1.0 / (DAYS_PER_MONTH * HALF_HOURS_PER_DAY)
    rest = max(tp.monthly_messages - tp.daily_reads_per_meter_month, 0.0) * per_tick
    rates = np.zeros(N_MESSAGE_TYPES)
    total = sum(tp.background_mix.values())
    for name, share in tp.background_mix.items():
        rates[MessageType[name]] += rest * share / total
    rates[MessageType.ALERT] += tp.monthly_alerts * per_tick
    return rates


@once_per_params
def _background(tp: TrafficParams) -> tuple[np.ndarray, np.ndarray]:
    """(`background_rates`, the background profile over its mean) of traffic parameters `tp`,
    built once per parameter set (a run has one), not once per tick."""
    profile = np.asarray(tp.background_profile, dtype=np.float64)
    return _background_rates(tp), profile / profile.mean()


def finish(summary: TickSummary, config: FleetConfig) -> TickSummary:
    """Fleet-level step after merging: draw background traffic, compute the alert peak.

    Background traffic depends only on merged integer counts and a fleet-keyed stream, so it is
    identical for any shard layout. It is drawn by CSP and type, then shared among the CSP's
    links (WAN technologies) by their reachable meters."""
    tod = (config.start_tick_of_day + summary.tick) % HALF_HOURS_PER_DAY
    rates, profile = _background(config.params.traffic)
    lam = np.outer(summary.reachable_meters, rates) * profile[tod]
    rng = fleet_rng(config.seed, summary.tick, Purpose.BACKGROUND_TRAFFIC)
    drawn = rng.poisson(lam)
    summary.messages += drawn
    by_wan = summary.reachable_meters_by_wan
    links = summary.link_messages.reshape(N_CSP, N_WAN, N_MESSAGE_TYPES)
    for c in range(N_CSP):
        meters = by_wan[c]
        if meters.sum() > 0:
            links[c] += rng.multinomial(drawn[c], meters / meters.sum()).T
    summary.peak_alerts_per_s = int(summary.alert_second_counts.max()) if summary.alert_second_counts.size else 0
    return summary
