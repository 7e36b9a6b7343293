"""The tick kernel: what the hubs held by one shard do in one half-hour.

Per tick the kernel touches only
- the hubs whose daily read slot is this half-hour (a contiguous sub-range of every block, so a
  2-D slice, about 1/48 of the hubs): daily reads, backlog catch-up, data loss, battery;
- the rare events of this tick (incidents starting and ending, alerts falling due), drawn as
  "how many, then which" from a fleet-keyed stream, so their cost grows with their number;
- the group counters, for reachable and dark hubs by CSP.
Everything else (consumption, registers, network schedules) is a function of time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from twin.model.alerts import count_alerts
from twin.model.catalog import (
    AREA_CSP,
    FAULT_LABEL,
    N_AREA_CODES,
    N_CSP,
    NO_CSP,
    AlertKind,
    Fault,
    Flag,
    MessageType,
    Status,
)
from twin.model.config import FleetConfig
from twin.model.params import HALF_HOURS_PER_DAY, TICK_SECONDS, TICKS_PER_YEAR
from twin.model.prepayment import count_prepay, prepay_pass
from twin.model.reach import on_dcc, reachable_now, wan_up
from twin.model.rng import Purpose, fleet_rng, hash_uniform
from twin.model.state import DARK_AGE_EDGES_DAYS, PW_ARRAYS, HubState
from twin.model.summary import N_DARK_REASONS, TickSummary
from twin.model.traffic import count_messages

if TYPE_CHECKING:
    from twin.model.ops.base import Control, ShardOperations

_DARK_AGE_EDGES_TICKS = np.array(DARK_AGE_EDGES_DAYS) * HALF_HOURS_PER_DAY
# (area code) x (CSP) one-hot, so per-area integer counts sum exactly into per-CSP counts.
_AREA_CSP = np.zeros((N_AREA_CODES, N_CSP), dtype=np.int64)
for _area in range(N_AREA_CODES):
    if AREA_CSP[_area] != NO_CSP:
        _AREA_CSP[_area, AREA_CSP[_area]] = 1
_FAULT_BITS = tuple(FAULT_LABEL)
# (fault byte) x (fault bit) 0/1: DCC hubs by (area, fault byte) @ it gives dark hubs by (area,
# fault bit), one integer product instead of a masked sum per bit.
_FAULT_BIT_MATRIX = ((np.arange(256)[:, None] & np.array(_FAULT_BITS, np.int64)[None, :]) != 0).astype(np.int64)


def slot_bounds(config: FleetConfig) -> np.ndarray:
    """Start of each half-hour's read slot within a block (49 edges)."""
    w = np.asarray(config.params.traffic.daily_read_profile, dtype=np.float64)
    if w.shape != (HALF_HOURS_PER_DAY,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("daily_read_profile must be 48 non-negative weights with a positive sum")
    edges = np.round(np.concatenate([[0.0], np.cumsum(w)]) / w.sum() * config.block_size).astype(np.int64)
    edges[-1] = config.block_size
    return edges


@dataclass
class IncidentDraw:
    """Incidents starting in one tick, identical for every shard (fleet-keyed)."""

    bit: int
    hub: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    alert_backoff_s: np.ndarray
    restore_backoff_s: np.ndarray


def _incident_kinds(config: FleetConfig) -> tuple[tuple[int, int, float, float, float], ...]:
    """(fault bit, purpose, rate per premises-year, median duration s, lognormal sigma)."""
    ip = config.params.incidents
    return (
        (Fault.POWER, Purpose.POWER_OUTAGE, ip.power_outages_per_year, ip.power_outage_median_min * 60,
         ip.power_outage_sigma),
        (Fault.HUB_FAULT, Purpose.HUB_FAULT, ip.hub_faults_per_year, ip.hub_fault_median_h * 3600,
         ip.hub_fault_sigma),
        (Fault.HARDWARE, Purpose.HARDWARE_FAILURE, ip.hardware_failures_per_year,
         ip.hardware_repair_median_days * 86400, ip.hardware_repair_sigma),
    )


def draw_background_incidents(config: FleetConfig, tick: int) -> list[IncidentDraw]:
    """Premises power cuts, transient hub faults and hardware failures starting this tick."""
    ip = config.params.incidents
    t0 = tick * TICK_SECONDS
    out = []
    for bit, purpose, per_year, median_s, sigma in _incident_kinds(config):
        rng = fleet_rng(config.seed, tick, purpose)
        k = int(rng.poisson(config.hubs * per_year / TICKS_PER_YEAR))
        if k == 0:  # most ticks of a small fleet: nothing more to draw from this stream
            none = np.zeros(0, np.int64)
            out.append(IncidentDraw(bit=int(bit), hub=none, start_s=none, end_s=none, alert_backoff_s=none,
                                    restore_backoff_s=none))
            continue
        hub = rng.integers(0, config.hubs, k)
        start = t0 + rng.integers(0, TICK_SECONDS, k)
        dur = np.maximum(1, median_s * np.exp(sigma * rng.standard_normal(k))).astype(np.int64)
        out.append(IncidentDraw(
            bit=int(bit), hub=hub, start_s=start, end_s=start + dur,
            alert_backoff_s=rng.integers(0, ip.outage_alert_backoff_s + 1, k),
            restore_backoff_s=rng.integers(0, ip.restore_alert_backoff_s + 1, k),
        ))
    return out


def draw_incidents_in_progress(config: FleetConfig) -> list[IncidentDraw]:
    """Incidents already under way at tick 0, from the stationary state of the processes above,
    so a run starts warm: how many by Little's law (rate x mean duration); each one's full
    duration from the length-biased lognormal (a longer incident is likelier to be in progress),
    and the time left uniform within it."""
    out = []
    for bit, purpose, per_year, median_s, sigma in _incident_kinds(config):
        rng = fleet_rng(config.seed, -1 & 0xFFFFFFFF, purpose)
        mean_s = median_s * np.exp(sigma**2 / 2)
        k = int(rng.poisson(config.hubs * per_year * mean_s / (TICKS_PER_YEAR * TICK_SECONDS)))
        hub = rng.integers(0, config.hubs, k)
        full = np.maximum(1, median_s * np.exp(sigma**2 + sigma * rng.standard_normal(k))).astype(np.int64)
        left = np.maximum(1, (rng.random(k) * full).astype(np.int64))
        zeros = np.zeros(k, np.int64)
        out.append(IncidentDraw(bit=int(bit), hub=hub, start_s=left - full, end_s=left,
                                alert_backoff_s=zeros, restore_backoff_s=zeros))
    return out


def start_incidents(state: HubState, draw: IncidentDraw, config: FleetConfig) -> int:
    """Apply one draw to the hubs held here; returns how many hubs it started on.

    A power cut joins the premises' unpowered time (`add_power_cuts`): overlapping and abutting
    cuts make one unpowered stretch, whatever incidents they came from. Any other fault has at most
    one incident per (hub, fault), so its end is unambiguous: on a hub already carrying the fault,
    a new incident that lasts longer extends the current one."""
    if draw.bit == Fault.POWER:
        return add_power_cuts(state, draw, config)
    mine = state.holds(draw.hub)
    if not mine.any():
        return 0
    hub = draw.hub[mine]
    _, first = np.unique(hub, return_index=True)
    keep = np.flatnonzero(mine)[np.sort(first)]
    hub = draw.hub[keep]
    rows = state.local(hub)
    free = (state.cols["fault"][rows] & draw.bit) == 0
    if not free.all():
        held = keep[~free]
        extend_incidents(state, draw.bit, hub[~free], draw.end_s[held])
    keep, hub, rows = keep[free], hub[free], rows[free]
    state.change(rows, fault_set=draw.bit)
    state.inc_hub = np.concatenate([state.inc_hub, hub])
    state.inc_bit = np.concatenate([state.inc_bit, np.full(hub.size, draw.bit, np.uint8)])
    state.inc_end_s = np.concatenate([state.inc_end_s, draw.end_s[keep]])
    return int(hub.size)


def extend_incidents(state: HubState, bit: int, hub: np.ndarray, end_s: np.ndarray) -> None:
    """Push the end of the hubs' current `bit` incidents out to `end_s` where that is later.
    `hub` holds unique hub ids."""
    sel = np.flatnonzero(state.inc_bit == bit)
    if sel.size == 0 or hub.size == 0:
        return
    order = sel[np.argsort(state.inc_hub[sel], kind="stable")]
    pos = np.minimum(np.searchsorted(state.inc_hub[order], hub), order.size - 1)
    found = state.inc_hub[order[pos]] == hub
    idx, end_s = order[pos[found]], end_s[found]
    state.inc_end_s[idx] = np.maximum(state.inc_end_s[idx], end_s)


# -- power: unpowered stretches per premises -----------------------------------------------------
#
# A premises' power is a set of stretches "unpowered since / until" (state.pw_*), disjoint and not
# touching per premises: a new cut that overlaps or abuts a stretch (same premises) merges into it,
# however many operator events, background incidents or firmware activations the cuts came from.
# The alerts follow from the stretches, not from the cuts: a stretch longer than 3 minutes raises
# one AD1 at since + 3 min + back-off, and one restoration alert (0x8F36) once power is back,
# at until + restoration back-off (never before its AD1). A merge can only move a stretch's start
# earlier while it is still in the future and its end later, so an alert is never due twice: one
# is sent exactly when its time falls in the tick being stepped.


def _power_alert_times(state: HubState, config: FleetConfig, sel: np.ndarray | slice
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(long, AD1 time s, restoration time s) of the stretches `sel`."""
    after = config.params.incidents.outage_alert_after_s
    since, until = state.pw_since_s[sel], state.pw_until_s[sel]
    long = (until - since) > after
    ad1 = since + after + state.pw_backoff_s[sel]
    return long, ad1, np.maximum(until + state.pw_restore_backoff_s[sel], ad1)


def add_power_cuts(state: HubState, draw: IncidentDraw, config: FleetConfig) -> int:
    """Join the cuts [start_s, end_s) of `draw` (held hubs only) to the premises' unpowered
    stretches. Returns how many premises lost power (the others were already unpowered then, or
    due to be, in a stretch the cut touches). Costs O(cuts + stretches held), never O(fleet)."""
    mine = state.holds(draw.hub) & (draw.end_s > draw.start_s)
    if not mine.any():
        return 0
    hub = draw.hub[mine].astype(np.int64)
    old = np.flatnonzero(np.isin(state.pw_hub, hub))
    k_old = old.size
    # Old stretches first, so at equal start an old stretch keeps its back-off (its AD1 may be out).
    all_hub = np.concatenate([state.pw_hub[old], hub])
    since = np.concatenate([state.pw_since_s[old], draw.start_s[mine].astype(np.int64)])
    until = np.concatenate([state.pw_until_s[old], draw.end_s[mine].astype(np.int64)])
    back = np.concatenate([state.pw_backoff_s[old], draw.alert_backoff_s[mine].astype(np.int64)])
    rback = np.concatenate([state.pw_restore_backoff_s[old], draw.restore_backoff_s[mine].astype(np.int64)])
    is_old = np.arange(all_hub.size) < k_old
    order = np.lexsort((np.arange(all_hub.size), since, all_hub))
    all_hub, since, until, back, rback, is_old = (a[order] for a in (all_hub, since, until, back, rback, is_old))
    # Running end per premises (a segmented maximum): shift each premises' ends into its own range.
    n = all_hub.size
    new_hub = np.r_[True, all_hub[1:] != all_hub[:-1]]
    rank = np.cumsum(new_hub) - 1
    lo = int(until.min())
    span = int(until.max()) - lo + 1
    run_end = np.maximum.accumulate(rank * span + (until - lo)) - rank * span + lo
    # A new stretch begins at a new premises or where power was back before this cut started.
    starts = new_hub.copy()
    starts[1:] |= since[1:] > run_end[:-1]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    g_until = np.maximum.reduceat(until, first)
    # The restoration back-off of the cut that ends last (the first such, in order).
    ends_last = np.flatnonzero(until == g_until[group])
    pick = np.full(first.size, n, np.int64)
    np.minimum.at(pick, group[ends_last], ends_last)
    has_old = np.bincount(group, weights=is_old, minlength=first.size) > 0
    has_new = np.bincount(group, weights=~is_old, minlength=first.size) > 0
    keep = np.ones(state.pw_hub.size, bool)
    keep[old] = False
    state.pw_hub = np.concatenate([state.pw_hub[keep], all_hub[first]])
    state.pw_since_s = np.concatenate([state.pw_since_s[keep], since[first]])
    state.pw_until_s = np.concatenate([state.pw_until_s[keep], g_until])
    state.pw_backoff_s = np.concatenate([state.pw_backoff_s[keep], back[first]])
    state.pw_restore_backoff_s = np.concatenate([state.pw_restore_backoff_s[keep], rback[pick]])
    cut = _unique(hub)
    _refresh_power_faults(state, cut, (state.last_tick + 1) * TICK_SECONDS)
    # Premises that lost power: those none of whose cuts here touches an earlier stretch.
    return int(cut.size - _unique(all_hub[first][has_old & has_new]).size)


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values by sorting (numpy's hash-based unique is several times slower on
    hundreds of thousands of hub ids)."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def _refresh_power_faults(state: HubState, hubs: np.ndarray, t0: int) -> None:
    """Set the POWER fault on `hubs` (unique ids held here) unpowered at some moment of the tick
    starting at `t0`, and clear it on the others."""
    if hubs.size == 0:
        return
    live = (state.pw_since_s < t0 + TICK_SECONDS) & (state.pw_until_s > t0)
    dark = np.isin(hubs, state.pw_hub[live])
    rows = state.local(hubs)
    has = (state.cols["fault"][rows] & Fault.POWER) != 0
    state.change(rows[dark & ~has], fault_set=Fault.POWER)
    state.change(rows[~dark & has], fault_clear=Fault.POWER)


def power_tick(state: HubState, t0: int, config: FleetConfig) -> None:
    """At the start of the tick from `t0`: the POWER fault follows the stretches, and stretches
    over with their alerts sent are dropped (one ending exactly at `t0` is kept for the tick, so
    a cut starting then joins it). Only premises with a stretch starting or ending at this tick
    boundary can change (a cut added during a tick sets its premises at once)."""
    if state.pw_hub.size == 0:
        return
    since, until = state.pw_since_s, state.pw_until_s
    edge = ((since >= t0) & (since < t0 + TICK_SECONDS)) | ((until > t0 - TICK_SECONDS) & (until <= t0))
    if edge.any():
        _refresh_power_faults(state, _unique(state.pw_hub[edge]), t0)
    ended = np.flatnonzero(until < t0)
    long, _, restore = _power_alert_times(state, config, ended)
    over = ended[~long | (restore < t0)]
    if over.size:
        keep = np.ones(state.pw_hub.size, bool)
        keep[over] = False
        for name in PW_ARRAYS:
            setattr(state, name, getattr(state, name)[keep])


def power_alerts_due(state: HubState, config: FleetConfig, t0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hub, kind, time s) of the power alerts falling due in [t0, t0 + tick): AD1 and restoration
    of stretches longer than 3 minutes, from premises on the DCC (SMETS1 not enrolled sends none)."""
    if state.pw_hub.size == 0:
        z = np.zeros(0, np.int64)
        return z, z.astype(np.uint8), z
    long, ad1, restore = _power_alert_times(state, config, slice(None))
    t1 = t0 + TICK_SECONDS
    a = np.flatnonzero(long & (ad1 >= t0) & (ad1 < t1))
    r = np.flatnonzero(long & (restore >= t0) & (restore < t1))
    # Only premises on the DCC send (a lookup for the few due, not for every stretch held).
    a = a[on_dcc(state.cols["smets"][state.local(state.pw_hub[a])])]
    r = r[on_dcc(state.cols["smets"][state.local(state.pw_hub[r])])]
    hub = np.concatenate([state.pw_hub[a], state.pw_hub[r]])
    kind = np.concatenate([np.full(a.size, AlertKind.POWER_OUTAGE, np.uint8),
                           np.full(r.size, AlertKind.POWER_RESTORED, np.uint8)])
    return hub, kind, np.concatenate([ad1[a], restore[r]])


def end_incidents(state: HubState, now_s: int) -> None:
    """Clear faults whose incident ended at or before `now_s`."""
    due = state.inc_end_s <= now_s
    if not due.any():
        return
    for bit in np.unique(state.inc_bit[due]):
        sel = due & (state.inc_bit == bit)
        state.change(state.local(state.inc_hub[sel]), fault_clear=int(bit))
    keep = ~due
    state.inc_hub, state.inc_bit, state.inc_end_s = state.inc_hub[keep], state.inc_bit[keep], state.inc_end_s[keep]


def send_alerts(state: HubState, s: TickSummary, t0: int, up_area: np.ndarray, config: FleetConfig) -> None:
    """Deliver the alerts falling due in [t0, t0 + tick), power alerts from the unpowered
    stretches and any queued ones: those from hubs whose WAN works."""
    p_hub, p_kind, p_time = power_alerts_due(state, config, t0)
    due = state.alert_time_s < t0 + TICK_SECONDS
    hub = np.concatenate([p_hub, state.alert_hub[due]])
    if hub.size == 0:
        return
    kind = np.concatenate([p_kind, state.alert_kind[due]]).astype(np.intp)
    time_s = np.concatenate([p_time, state.alert_time_s[due]])
    rows = state.local(hub)
    sec = np.clip(time_s - t0, 0, TICK_SECONDS - 1)
    area = state.cols["area"][rows]
    # An outage alert leaves an unpowered hub (its reserve covers the send); any other fault stops it.
    ok = wan_up(state.cols["fault"][rows], area, state.cols["wan"][rows], up_area, ignore=Fault.POWER)
    count_alerts(s, state, rows[ok], kind[ok], sec[ok])
    s.alerts_undelivered += int((~ok).sum())
    if due.any():
        keep = ~due
        state.alert_hub, state.alert_kind, state.alert_time_s = (
            state.alert_hub[keep], state.alert_kind[keep], state.alert_time_s[keep])


def slot_pass(state: HubState, s: TickSummary, tick: int, config: FleetConfig, up_area: np.ndarray,
              bounds: np.ndarray) -> None:
    """The hubs whose daily read falls in this half-hour: reads, catch-up, data loss, battery."""
    slot = (config.start_tick_of_day + tick) % HALF_HOURS_PER_DAY
    lo, hi = int(bounds[slot]), int(bounds[slot + 1])
    if hi <= lo:
        return
    bs = state.block_size

    def view(name: str) -> np.ndarray:
        return state.blocks(name)[:, lo:hi]

    area = view("area")
    dcc = (area != 0) & on_dcc(view("smets"))
    fault = view("fault")
    reach = dcc & reachable_now(smets=view("smets"), fault=fault, area=area, wan=view("wan"), up_area=up_area)
    dark = dcc & ~reach
    flags = view("flags")
    status = view("status")
    has_gas = (flags & Flag.HAS_GAS) != 0
    gas_alive = has_gas & ((status & Status.GSME_DEAD) == 0)
    meters = 1 + gas_alive.astype(np.int64)
    daily = ((flags & Flag.ESME_DAILY) != 0).astype(np.int64) + ((flags & Flag.GSME_DAILY) != 0) * gas_alive
    csp = AREA_CSP[area].astype(np.intp)
    last = view("last_contact")
    gap = tick - last.astype(np.int64)

    # Daily reads from reachable hubs, and catch-up reads of the days they missed.
    rc, rw, rcell = csp[reach], view("wan")[reach], view("cell")[reach]
    count_messages(s, MessageType.DAILY_READ, rc, rw, rcell, daily[reach])
    log_days = config.params.shares.meter_log_days
    missed = np.clip(gap[reach] // HALF_HOURS_PER_DAY - 1, 0, log_days)
    if missed.any():
        count_messages(s, MessageType.BACKLOG_READ, rc, rw, rcell, missed * daily[reach])
    # ESMEs migrated to half-hourly settlement (twin.model.ops.mhhs): one retrieval of the day's
    # 48 half-hourly values, and one for each day missed while the hub was out of reach.
    hh = (status[reach] & Status.HH_SETTLEMENT) != 0
    if hh.any():
        count_messages(s, MessageType.SETTLEMENT_READ, rc[hh], rw[hh], rcell[hh], 1 + missed[hh])
    last[reach] = tick

    # Dark hubs: the meter log holds log_days; older unread periods roll off and are lost.
    log_ticks = log_days * HALF_HOURS_PER_DAY
    g_dark = gap[dark]
    m_dark = meters[dark]
    over = np.clip(g_dark - log_ticks, 0, HALF_HOURS_PER_DAY)
    s.hh_lost += int((over * m_dark).sum())
    if over.any():
        lost_days = view("lost_days")
        bump = np.zeros(dark.shape, dtype=bool)
        bump[dark] = over > 0
        lost_days[bump] = np.minimum(lost_days[bump].astype(np.int64) + 1, np.iinfo(np.uint16).max)
    state.slot_at_risk[slot] = int((np.minimum(g_dark, log_ticks) * m_dark).sum())
    state.slot_dark_age[slot] = np.bincount(np.searchsorted(_DARK_AGE_EDGES_TICKS, g_dark, side="right"),
                                            minlength=len(_DARK_AGE_EDGES_TICKS) + 1)

    _battery(state, s, tick, config, view, reach, has_gas, gas_alive, status, csp, lo, bs)


def _battery(state: HubState, s: TickSummary, tick: int, config: FleetConfig, view, reach: np.ndarray,
             has_gas: np.ndarray, gas_alive: np.ndarray, status: np.ndarray, csp: np.ndarray, lo: int,
             bs: int) -> None:
    """GSME battery: baseline drain is a function of time; alert when low, dead at zero,
    replaced by a field visit some days after the alert."""
    sh = config.params.shares
    drain_per_day = 10_000 / (sh.gsme_battery_life_years * 365.25)
    days = (config.start_tick_of_day + tick) / HALF_HOURS_PER_DAY
    batt = view("gsme_battery")
    level = batt.astype(np.float64) - drain_per_day * days

    low_flag = (status & Status.LOW_BATTERY) != 0
    newly_low = gas_alive & reach & ~low_flag & (level < sh.gsme_low_battery_pct * 100)
    if newly_low.any():
        status[newly_low] |= np.uint8(Status.LOW_BATTERY)
        b, j = np.nonzero(newly_low)
        hubs = state.offset + b * bs + lo + j
        sec = (hash_uniform(state.seed, Purpose.ALERT_BACKOFF, hubs, tick) * TICK_SECONDS).astype(np.int64)
        count_alerts(s, state, hubs - state.offset, np.full(hubs.size, AlertKind.LOW_BATTERY, np.intp), sec)

    dying = gas_alive & (level <= 0)
    if dying.any():
        b, j = np.nonzero(dying)
        state.change(b * bs + lo + j, status_set=Status.GSME_DEAD)

    pending = has_gas & ((status & (Status.LOW_BATTERY | Status.GSME_DEAD)) != 0)
    if pending.any():
        b, j = np.nonzero(pending)
        rows = b * bs + lo + j
        day = (config.start_tick_of_day + tick) // HALF_HOURS_PER_DAY
        u = hash_uniform(state.seed, Purpose.BATTERY_REPLACEMENT, state.offset + rows, day)
        done = rows[u < 1.0 / sh.gsme_replacement_days]
        if done.size:
            full = min(10_000 + drain_per_day * days, np.iinfo(np.uint16).max)
            state.change(done, gsme_battery=int(full), status_clear=Status.LOW_BATTERY | Status.GSME_DEAD)


def count_hubs(state: HubState, s: TickSummary, up_area: np.ndarray) -> None:
    """Reachable and dark hubs by CSP from the group counters: O(areas x technologies)."""
    # All integer counts: regrouping the sums changes nothing.
    dcc_by_area = state.dcc_hubs.sum(axis=1)
    ok_by_area = (state.ok_hubs * up_area).sum(axis=1)
    ok_meters = state.ok_meters * up_area
    s.dcc_hubs += dcc_by_area @ _AREA_CSP
    s.reachable_hubs += ok_by_area @ _AREA_CSP
    s.reachable_meters += ok_meters.sum(axis=1) @ _AREA_CSP
    s.reachable_meters_by_wan += _AREA_CSP.T @ ok_meters
    s.off_dcc_hubs += state.off_dcc_hubs @ _AREA_CSP
    s.meters += state.meters @ _AREA_CSP
    s.area_dcc_hubs += dcc_by_area
    s.area_off_dcc_hubs += state.off_dcc_hubs
    s.area_reachable += ok_by_area
    s.area_meters += state.meters
    reasons = np.empty((N_AREA_CODES, N_DARK_REASONS), dtype=np.int64)
    reasons[:, :-1] = state.dcc_fault @ _FAULT_BIT_MATRIX
    reasons[:, -1] = (state.ok_hubs * ~up_area).sum(axis=1)
    s.dark_by_reason += _AREA_CSP.T @ reasons
    s.hubs_by_wan += _AREA_CSP.T @ state.dcc_hubs
    # Only the suppliers' rows and columns the summary holds (codes past them are unused).
    n_sup = s.supplier_hubs.size
    s.supplier_hubs += state.supplier_pairs[:n_sup].sum(axis=1)
    s.gas_supplier_hubs += state.supplier_pairs[:, :n_sup].sum(axis=0)
    s.hh_at_risk += int(state.slot_at_risk.sum())
    s.dark_age += state.slot_dark_age.sum(axis=0)


def step(state: HubState, tick: int, config: FleetConfig, ops: ShardOperations, controls: Sequence[Control] = (),
         bounds: np.ndarray | None = None) -> TickSummary:
    """Advance the hubs held in `state` through `tick`; returns this shard's summary.

    `controls` are this tick's instructions from the fleet level (operations starting, budgets,
    state changes); they apply first, so an event "at tick t" shapes tick t."""
    if tick != state.last_tick + 1:
        raise ValueError(f"ticks must be stepped in order: expected {state.last_tick + 1}, got {tick}")
    if bounds is None:
        bounds = slot_bounds(config)
    s = TickSummary(tick=tick)
    ops.apply(state, tick, list(controls), s)
    up_area = ops.network.up_by_area(tick)
    t0 = tick * TICK_SECONDS
    end_incidents(state, t0)
    power_tick(state, t0, config)
    for draw in draw_background_incidents(config, tick):
        start_incidents(state, draw, config)
    ops.step(state, tick, s, up_area)
    prepay_pass(state, s, tick, config, up_area)
    send_alerts(state, s, t0, up_area, config)
    slot_pass(state, s, tick, config, up_area, bounds)
    count_hubs(state, s, up_area)
    count_prepay(state, s)
    ops.report(state, tick, s)
    state.last_tick = tick
    return s
