"""The interaction matrix of operator events (docs/event-interactions.md): events that touch the same
premises, suppliers or networks compose to one analytic outcome, asserted exactly on a small fleet."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import quiet_params
from twin.model.catalog import AREA_CSP, AlertKind, Csp, Fault, Smets, WanTech
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.kernel import IncidentDraw, start_incidents
from twin.model.params import HALF_HOURS_PER_DAY, TICK_SECONDS
from twin.model.rng import Purpose, fleet_rng

DAY = HALF_HOURS_PER_DAY
AREA = 12  # a DNO licence area of the South
AD1, RESTORED = int(AlertKind.POWER_OUTAGE), int(AlertKind.POWER_RESTORED)


def fleet(hubs: int = 8_192, seed: int = 41, splits: int = 1, **events) -> LocalFleet:
    from dataclasses import replace

    params = quiet_params()
    if events:
        params = replace(params, events=replace(params.events, **events))
    return LocalFleet(FleetConfig(hubs=hubs, seed=seed, block_size=1024, params=params), splits=splits)


def cols(f: LocalFleet) -> tuple[dict[str, np.ndarray], int]:
    st_ = f.states[0]
    return st_.cols, st_.n_hubs


def dcc(f: LocalFleet) -> np.ndarray:
    c, n = cols(f)
    return (c["area"][:n] != 0) & (c["smets"][:n] != Smets.SMETS1_NOT_ENROLLED)


def deliverable(f: LocalFleet, tick: int) -> np.ndarray:
    """DCC premises whose alert would reach the DCC: no fault but power, their network up."""
    c, n = cols(f)
    up = f.planner.network.up_by_area(tick)
    return dcc(f) & ((c["fault"][:n] & ~np.uint8(Fault.POWER)) == 0) & up[c["area"][:n], c["wan"][:n]]


def counts(ss, kind: int) -> list[int]:
    return [int(s.alerts[:, kind].sum()) for s in ss]


def outage(f: LocalFleet, at: str, minutes: float, fraction: float = 1.0, area: int = AREA, **kw):
    return f.submit({"type": "power_outage", "area": area, "fraction": fraction, "duration_min": minutes,
                     "onset_spread_s": 0, "alert_backoff_s": 0, "at": at, **kw})


def share(f: LocalFleet, op, area: int = AREA) -> np.ndarray:
    """Mask of the premises an outage's share of the area takes (its static window)."""
    seq = int(op.name.rsplit("-", 1)[1])
    st_ = f.states[0]
    offset = float(fleet_rng(st_.seed, seq, Purpose.EVENT + 16 * seq).random())
    rows = st_.area_window(area, offset, op.cmd.fraction)
    m = np.zeros(st_.n_hubs, bool)
    m[rows] = True
    return m


def in_area(f: LocalFleet, area: int = AREA) -> np.ndarray:
    c, n = cols(f)
    return c["area"][:n] == area


# -- outage x outage ------------------------------------------------------------------------------

def test_a_short_cut_then_a_long_one_raises_ad1_from_every_premises_dark_for_the_hour():
    """The issue's example: 2 minutes, then 60 on the same premises; one stretch of an hour."""
    f = fleet()
    outage(f, "1h", 2)
    outage(f, "1h", 60, onset_spread_s=100)  # starts within the 2-minute cut
    ss = f.run(6)
    cut = in_area(f) & dcc(f)
    ok = deliverable(f, 2) & in_area(f)
    assert counts(ss, AD1) == [0, 0, int(ok.sum()), 0, 0, 0]
    assert sum(s.alerts_undelivered for s in ss) == 2 * int((cut & ~ok).sum())
    # One restoration each, when the hour is over (the tick from 3 h, as it ends by 3 h 01 m 40 s).
    assert sum(counts(ss, RESTORED)) == int(ok.sum()) and counts(ss, RESTORED)[4] == int(ok.sum())
    assert int(ss[3].dark_by_reason[:, 1].sum()) == int(cut.sum())
    assert int(ss[5].dark_by_reason[:, 1].sum()) == 0


def test_a_long_cut_then_a_short_one_inside_it_changes_nothing():
    f = fleet()
    first = outage(f, "1h", 90)
    second = outage(f, "2h", 2)
    ss = f.run(8)
    ok = deliverable(f, 2) & in_area(f)
    assert sum(counts(ss, AD1)) == int(ok.sum()) and counts(ss, AD1)[2] == int(ok.sum())
    assert sum(counts(ss, RESTORED)) == int(ok.sum()) and counts(ss, RESTORED)[5] == int(ok.sum())
    assert first.counters["premises_cut"] == int(in_area(f).sum())
    assert second.counters["premises_cut"] == 0  # all already unpowered
    assert second.counters["premises_already_unpowered"] == int(in_area(f).sum())


def test_disjoint_cuts_alert_each_on_its_own_length():
    f = fleet()
    outage(f, "1h", 2)
    outage(f, "2h", 2)   # two 2-minute cuts, half an hour apart: no AD1 at all
    outage(f, "3h", 10)
    outage(f, "4h", 10)  # two 10-minute cuts: two AD1 and two restorations each
    ss = f.run(10)
    ok = int((deliverable(f, 2) & in_area(f)).sum())
    assert counts(ss, AD1) == [0, 0, 0, 0, 0, 0, ok, 0, ok, 0]
    assert counts(ss, RESTORED) == [0, 0, 0, 0, 0, 0, ok, 0, ok, 0]


def test_abutting_cuts_are_one_stretch():
    f = fleet()
    outage(f, "1h", 30)  # ends exactly as the next begins
    outage(f, "90m", 2)
    ss = f.run(6)
    ok = int((deliverable(f, 2) & in_area(f)).sum())
    assert counts(ss, AD1) == [0, 0, ok, 0, 0, 0]
    assert counts(ss, RESTORED) == [0, 0, 0, ok, 0, 0]  # at 1 h 32 m, not at 1 h 30 m


def test_partial_shares_of_an_area_alert_once_per_premises_of_their_union():
    f = fleet(hubs=16_384)
    a = outage(f, "1h", 45, fraction=0.5)
    b = outage(f, "1h", 20, fraction=0.5, onset_spread_s=600)
    ss = f.run(6)
    sa, sb = share(f, a), share(f, b)
    assert 0 < (sa & sb).sum() < sa.sum()  # the shares overlap in part
    ok = deliverable(f, 2)
    assert sum(counts(ss, AD1)) == int((ok & (sa | sb)).sum())
    assert sum(counts(ss, RESTORED)) == int((ok & (sa | sb)).sum())
    assert a.counters["premises_cut"] == int(sa.sum())
    assert b.counters["premises_cut"] == int((sb & ~sa).sum())


# -- property: any overlapping intervals on the same premises --------------------------------------

def _stretches(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Maximal unpowered stretches of half-open intervals (touching ones join)."""
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


cut_st = st.tuples(st.integers(0, 5), st.integers(0, TICK_SECONDS - 1), st.integers(1, 2 * TICK_SECONDS),
                   st.integers(0, 120), st.integers(0, 120))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cut_st, min_size=1, max_size=5), min_size=1, max_size=6))
def test_property_ad1_per_stretch_over_three_minutes_and_one_restoration_after_it(premises_cuts):
    """Random cuts (tick, second, length, back-offs) on a few premises, each drawn in the tick it
    starts: AD1 count == stretches of the union longer than 180 s, each restoration at or after its
    AD1 and after the stretch ends, and every premises powered once all are over."""
    f = fleet(hubs=2_048, seed=3)
    c, _ = cols(f)
    hubs = np.flatnonzero(deliverable(f, 0))[: len(premises_cuts)]
    by_tick: dict[int, list[tuple[int, int, int, int, int]]] = {}
    expected_ad1 = expected_rest = 0
    for hub, cuts in zip(hubs, premises_cuts, strict=False):
        for tick, sec, length, b, rb in cuts:
            by_tick.setdefault(tick, []).append((int(hub), tick * TICK_SECONDS + sec, length, b, rb))
        spans = _stretches([(t * TICK_SECONDS + s, t * TICK_SECONDS + s + ln) for t, s, ln, _, _ in cuts])
        long = [sp for sp in spans if sp[1] - sp[0] > 180]
        expected_ad1 += len(long)
        expected_rest += len(long)
    ad1 = rest = 0
    events: list[tuple[int, int, int]] = []
    for tick in range(12):
        for hub, start, length, b, rb in by_tick.get(tick, []):
            start_incidents(f.states[0], IncidentDraw(
                bit=int(Fault.POWER), hub=np.array([hub]), start_s=np.array([start]), end_s=np.array([start + length]),
                alert_backoff_s=np.array([b]), restore_backoff_s=np.array([rb])), f.config)
        s = f.step()
        ad1 += int(s.alerts[:, AD1].sum())
        rest += int(s.alerts[:, RESTORED].sum())
        ev = s.alert_events
        if ev:
            events += [(int(h), int(k), tick * TICK_SECONDS + int(x)) for h, k, x in zip(ev["hub"], ev["kind"], ev["sec"],
                                                                                            strict=True)]
    assert (ad1, rest) == (expected_ad1, expected_rest)
    for hub in {h for h, _, _ in events}:
        mine = sorted((t, k) for h, k, t in events if h == hub)
        kinds = [k for _, k in mine]
        assert kinds == [AD1, RESTORED] * (len(kinds) // 2)  # alternate, starting with AD1
    assert not (c["fault"][hubs] & Fault.POWER).any()
    assert f.states[0].pw_hub.size == 0  # nothing left behind


# -- outage x firmware activation power cut -------------------------------------------------------

def test_an_activation_cut_running_into_an_outage_is_one_stretch_with_one_ad1():
    """An ESME activation cuts the hub's power for 300 s from 1,600 s into a tick; an area outage
    begins at the next tick's start, while the activation cut lasts: one stretch, one AD1."""
    f = fleet()
    ok = np.flatnonzero(deliverable(f, 0) & in_area(f))
    act = ok[:25]
    outage(f, "1h", 60)
    f.run(1)  # tick 0 done; tick 1 starts at 1,800 s
    t1 = (f.tick + 1) * TICK_SECONDS  # the outage's start
    start_incidents(f.states[0], IncidentDraw(bit=int(Fault.POWER), hub=act.astype(np.int64),
                                              start_s=np.full(act.size, t1 - 200), end_s=np.full(act.size, t1 + 100),
                                              alert_backoff_s=np.zeros(act.size, np.int64),
                                              restore_backoff_s=np.zeros(act.size, np.int64)), f.config)
    ss = f.run(5)
    # Every premises once; the activated ones' AD1 counts from the activation cut (tick 1, 20 s
    # before the outage), the others' from the outage's start (tick 2).
    assert counts(ss, AD1) == [act.size, ok.size - act.size, 0, 0, 0]
    assert sum(counts(ss, RESTORED)) == ok.size


def test_a_rollout_never_activates_a_premises_while_it_is_unpowered():
    f = fleet(hubs=16_384)
    op = f.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
                   "target_version": "5.9.0", "waves": [1.0], "failure_prob": 0.0, "brick_prob": 0.0,
                   "max_days": 1, "regions": ["South"]})
    c, n = cols(f)
    fw0 = c["esme_fw"][:n].copy()
    outage(f, "0h", 60 * 24 * 3)  # longer than the rollout runs
    f.run(2 * DAY)
    from twin.model.catalog import DeviceType, model_code
    target = (c["esme_model"][:n] == model_code(DeviceType.ESME, "EDMI", "ES-10A")) & \
        (AREA_CSP[c["area"][:n]] == Csp.SOUTH)
    reach = deliverable(f, f.tick - 1) & ((c["fault"][:n] & Fault.POWER) == 0)
    assert op.state == "DONE"
    assert op.counters["targeted"] == int(target.sum())
    # Every reachable device got the image and was activated (or its transfer failed); none in the cut.
    assert op.counters["activated"] + op.counters["failed"] == int((target & reach).sum())
    # The rest (the cut premises and those never reachable) were still waiting when it closed.
    assert op.counters["cancelled"] == int((target & ~reach).sum())
    assert op.reason == f"{int((target & ~reach).sum())} devices still without WAN when the rollout closed"
    assert (target & in_area(f)).sum() > 0 and (c["esme_fw"][:n] == fw0)[target & in_area(f)].all()


# -- Service Requests x outage ---------------------------------------------------------------------

def test_a_service_request_waits_for_the_end_of_every_overlapping_cut():
    f = fleet()
    hub = int(np.flatnonzero(deliverable(f, 0) & in_area(f))[0])
    outage(f, "0h", 40)
    outage(f, "30m", 80)  # the premises stay off until 1 h 50 m
    op = f.submit({"type": "service_request", "srv": "7.2", "hub": hub, "user_id": "u", "request_id": "r"})
    applied = [s.ops.get(op.name, {}).get("applied", 0) for s in f.run(6)]
    # Off over [0 s, 6,600 s): dark in ticks 0-3, applied in tick 4 (not at the first cut's end).
    assert applied == [0, 0, 0, 0, 1, 0]
    c, _ = cols(f)
    from twin.model.catalog import Status
    assert c["status"][hub] & Status.SUPPLY_OFF



# -- network windows: switch-off x csp_incident x base-station failure ------------------------------

def _reachable_north(ss) -> list[int]:
    return [int(s.reachable_hubs[Csp.NORTH]) for s in ss]


def test_a_csp_incident_ending_never_brings_back_a_network_switched_off_for_good():
    f = fleet()
    f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": "1h"})
    f.submit({"type": "csp_incident", "region": "South", "duration_min": 60, "at": "2h"})
    f.run(10)
    up = [bool(f.planner.network.up(t)[Csp.SOUTH, WanTech.G3]) for t in range(12)]
    assert up == [True, True] + [False] * 10
    assert [bool(f.network.up(t)[Csp.SOUTH, WanTech.G2]) for t in range(8)] == [True] * 4 + [False] * 2 + [True] * 2
    c, n = cols(f)
    g3 = (AREA_CSP[c["area"][:n]] == Csp.SOUTH) & (c["wan"][:n] == WanTech.G3) & dcc(f)
    assert int(f.step().dark_by_reason[Csp.SOUTH, -1]) == int((g3 & (c["fault"][:n] == 0)).sum())


def test_incidents_on_one_network_compose_as_the_union_of_their_windows():
    f = fleet()
    f.submit({"type": "csp_incident", "region": "Central", "duration_min": 120, "at": "1h"})  # ticks 2-5
    f.submit({"type": "csp_incident", "region": "Central", "duration_min": 30, "at": "2h"})   # tick 4, inside
    f.submit({"type": "csp_incident", "region": "Central", "duration_min": 30, "at": "5h"})   # tick 10, apart
    f.submit({"type": "network_switch_off", "region": "Central", "technology": "2G", "at": "8h"})  # tick 16 on
    up3 = [bool(f.planner.network.up(t)[Csp.CENTRAL, WanTech.G3]) for t in range(18)]
    up2 = [bool(f.planner.network.up(t)[Csp.CENTRAL, WanTech.G2]) for t in range(18)]
    assert up3 == [True] * 2 + [False] * 4 + [True] * 4 + [False] + [True] * 7
    assert up2 == [True] * 2 + [False] * 4 + [True] * 4 + [False] + [True] * 5 + [False] * 2
    ss = f.run(18)
    # The shards hold the same schedule: Central's cellular hubs dark exactly in those ticks.
    c, n = cols(f)
    central = (AREA_CSP[c["area"][:n]] == Csp.CENTRAL) & dcc(f) & (c["fault"][:n] == 0)
    g2, g3 = central & (c["wan"][:n] == WanTech.G2), central & (c["wan"][:n] == WanTech.G3)
    expect = [int((g2 & ~np.bool_(a)).sum() + (g3 & ~np.bool_(b)).sum()) for a, b in zip(up2, up3, strict=True)]
    assert [int(s.dark_by_reason[Csp.CENTRAL, -1]) for s in ss] == expect


def test_base_station_failures_and_a_csp_incident_keep_hubs_dark_until_the_last_one_ends():
    f = fleet(hubs=16_384)
    c, n = cols(f)
    north_lrr = (AREA_CSP[c["area"][:n]] == Csp.NORTH) & (c["wan"][:n] == WanTech.LRR) & dcc(f) \
        & (c["fault"][:n] == 0)
    cells, per_cell = np.unique(c["cell"][:n][north_lrr], return_counts=True)
    x, y, z = (int(v) for v in cells[np.argsort(-per_cell, kind="stable")[:3]])
    on = {k: north_lrr & (c["cell"][:n] == k) for k in (x, y, z)}
    f.submit({"type": "base_station_failure", "cells": [x, y], "duration_min": 60, "at": "1h"})   # ticks 2-3
    f.submit({"type": "base_station_failure", "cells": [y, z], "duration_min": 180, "at": "90m"})  # ticks 3-8
    f.submit({"type": "csp_incident", "region": "North", "duration_min": 60, "at": "5h"})         # ticks 10-11
    r0 = int(f.step().reachable_hubs[Csp.NORTH])
    ss = f.run(13)  # ticks 1-13
    nx, ny, nz = (int(on[k].sum()) for k in (x, y, z))
    lrr = int(north_lrr.sum())
    dark = [0, nx + ny, nx + ny + nz, ny + nz, ny + nz, ny + nz, ny + nz, ny + nz, 0, lrr, lrr, 0, 0]
    assert _reachable_north(ss) == [r0 - d for d in dark]


# -- suppliers: switch x failure, failure x failure, churn x failure --------------------------------

def _sup(name: str) -> int:
    from twin.model.catalog import supplier_code

    return supplier_code(name)


def test_a_switch_to_a_failed_supplier_is_refused_and_one_before_the_failure_is_moved_by_the_solr():
    f = fleet()
    c, n = cols(f)
    hub = int(np.flatnonzero(deliverable(f, 0) & (c["supplier"][:n] != _sup("OVO Energy"))
                             & (c["gas_supplier"][:n] == 0))[0])
    early = f.submit({"type": "supplier_switch", "hub": hub, "to_supplier": "OVO Energy", "fuel": "electricity"})
    f.submit({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas", "daily_cap": 100_000,
              "at": "1h"})
    other = int(np.flatnonzero(deliverable(f, 0) & (c["supplier"][:n] != _sup("OVO Energy")))[1])
    with pytest.raises(TwinInputError) as e:
        f.submit({"type": "supplier_switch", "hub": other, "to_supplier": "OVO Energy", "at": "2h"})
    assert e.value.field == "to_supplier"
    f.run(DAY + 8)
    assert early.state == "DONE" and c["supplier"][hub] == _sup("British Gas")
    assert not (c["supplier"][:n] == _sup("OVO Energy")).any()


def test_a_switch_accepted_before_its_gaining_supplier_failed_is_withdrawn():
    f = fleet()
    c, n = cols(f)
    hub = int(np.flatnonzero(deliverable(f, 0) & (c["supplier"][:n] != _sup("OVO Energy")))[0])
    before = int(c["supplier"][hub])
    sw = f.submit({"type": "supplier_switch", "hub": hub, "to_supplier": "OVO Energy", "fuel": "electricity",
                   "at": "2h"})
    f.submit({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas", "at": "1h"})
    f.run(12)
    assert sw.state == "FAILED" and "gaining supplier failed" in sw.reason
    assert c["supplier"][hub] == before and sw.counters["switches"] == 0


def test_a_solr_that_fails_in_turn_passes_every_customer_down_the_chain():
    """A fails to B (a cap that takes days); B fails to C on day 1; C's customers at the end are
    exactly C's own, A's and B's; nobody is left with A or B, and no second failure of A or B,
    nor a failure to a failed supplier, is accepted."""
    f = fleet(hubs=16_384)
    c, n = cols(f)
    a, b, cc = _sup("OVO Energy"), _sup("British Gas"), _sup("Octopus Energy")
    elec0, gas0 = c["supplier"][:n].copy(), c["gas_supplier"][:n].copy()
    fa = f.submit({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas", "daily_cap": 300})
    fb = f.submit({"type": "supplier_failure", "supplier": "British Gas", "solr": "Octopus Energy",
                   "daily_cap": 100_000, "at": "1d"})
    for bad, field in (({"supplier": "OVO Energy", "solr": "E.ON Next"}, "supplier"),
                       ({"supplier": "E.ON Next", "solr": "British Gas"}, "solr")):
        with pytest.raises(TwinInputError) as e:
            f.submit({"type": "supplier_failure", **bad})
        assert e.value.field == field
    f.run(DAY)
    b_at_failure = int(((c["supplier"][:n] == b) | (c["gas_supplier"][:n] == b)).sum())
    f.run(13 * DAY)  # 2,015 of A's at 300 a day, then the last credential swaps' deadline
    assert fa.state == fb.state == "DONE"
    moved = np.isin(elec0, (a, b, cc))
    assert (c["supplier"][:n][moved] == cc).all() and (c["supplier"][:n][~moved] == elec0[~moved]).all()
    gas_moved = np.isin(gas0, (a, b, cc))
    assert (c["gas_supplier"][:n][gas_moved] == cc).all()
    assert (c["gas_supplier"][:n][~gas_moved] == gas0[~gas_moved]).all()
    # B moved its own customers and the share of A's it had received by its failure (one day's cap).
    assert fa.counters["moved"] == int(((elec0 == a) | (gas0 == a)).sum())
    # The progress series is a step function (a report is kept when it changes): its value at a tick
    # is the newest kept at or before it.
    assert [c for t, c in fa.history if t <= DAY - 1][-1]["moved"] == 300
    assert fb.counters["customers"] == fb.counters["moved"] == b_at_failure


def test_churn_never_sends_anyone_to_a_failed_supplier_and_the_solr_moves_the_rest():
    f = fleet(hubs=16_384)
    c, n = cols(f)
    a = _sup("OVO Energy")
    f.submit({"type": "churn_campaign", "switches_per_month": 200_000, "days": 4})
    fail = f.submit({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas",
                     "daily_cap": 2_000, "at": "1d"})
    at_failure = None
    for _ in range(10 * DAY):
        f.step()
        if f.tick == DAY:  # the failure starts with tick DAY, before any churn in it
            at_failure = ((c["supplier"][:n] == a) | (c["gas_supplier"][:n] == a)).copy()
    assert fail.state == "DONE"
    assert not ((c["supplier"][:n] == a) | (c["gas_supplier"][:n] == a)).any()
    # Every customer at the failure either moved to the SoLR through it or had churned away first.
    assert fail.counters["customers"] == int(at_failure.sum())
    assert fail.counters["moved"] <= fail.counters["customers"] and fail.counters["remaining"] == 0


# -- rollout x switch-off, rollout x rollout -------------------------------------------------------

def _rollout(f: LocalFleet, **kw):
    ev = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
          "target_version": "5.9.0", "waves": [1.0], "failure_prob": 0.0, "brick_prob": 0.0}
    return f.submit({**ev, **kw})


def _esme_target(f: LocalFleet, regions: tuple[int, ...] = (Csp.NORTH, Csp.CENTRAL, Csp.SOUTH)) -> np.ndarray:
    from twin.model.catalog import DeviceType, model_code

    c, n = cols(f)
    return (c["esme_model"][:n] == model_code(DeviceType.ESME, "EDMI", "ES-10A")) \
        & np.isin(AREA_CSP[c["area"][:n]], regions)


def test_a_rollout_whose_hubs_go_dark_mid_distribution_still_closes_and_counts_them():
    """Central's 2G and 3G switched off while 2G/3G images are still on their way (4 MB at
    9.6-64 kbit/s): those transfers are lost, the devices wait, the rollout closes at max_days
    with them counted; before, a transfer to a hub dark for good kept the rollout running for ever."""
    f = fleet(hubs=16_384, transfer_failure=0.0)
    c, n = cols(f)
    fw0 = c["esme_fw"][:n].copy()
    op = _rollout(f, max_days=1, image_size_kb=4096, concurrency_per_csp=50)
    f.submit({"type": "network_switch_off", "region": "Central", "technology": "2G", "at": "3h"})
    f.submit({"type": "network_switch_off", "region": "Central", "technology": "3G", "at": "3h"})
    f.run(6)
    assert op.counters["transferring"] > 0  # images on their way as the networks go
    # Past max_days it closes once no reachable device is left to serve: 50 4-MB images at a
    # time per CSP take the North's long-range radio into the third day.
    f.run(3 * DAY)
    target = _esme_target(f)
    upgraded = target & (c["esme_fw"][:n] != fw0)
    reach = deliverable(f, f.tick - 1) & (c["fault"][:n] == 0)
    assert op.state == "DONE"
    assert op.counters["activated"] == int(upgraded.sum()) and op.counters["failed"] == 0
    assert int((target & reach & ~upgraded).sum()) == 0  # every device reachable at the close has it
    assert op.counters["cancelled"] == int((target & ~upgraded).sum())
    assert op.reason == f"{op.counters['cancelled']} devices still without WAN when the rollout closed"


def test_rollouts_on_the_same_devices_are_refused_until_the_first_is_over():
    f = fleet()
    first = _rollout(f, regions=["North"])
    for clash in ({"regions": ["North", "South"]}, {}, {"suppliers": ["Octopus Energy"]}):
        with pytest.raises(TwinInputError) as e:
            _rollout(f, target_version="5.9.1", **clash)
        assert e.value.field == "model" and first.name in str(e.value)
    disjoint = _rollout(f, regions=["Central"], target_version="5.9.1")
    other_model = f.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": "Landis & Gyr",
                            "model": "E470-5394", "target_version": "3.3.0", "regions": ["North"]})
    f.submit({"type": "operation_control", "operation": first.name, "action": "cancel"})
    f.run(8)
    assert first.state == "CANCELLED"
    # Once the first is over (cancelled, halted or done) its devices are free for the next one.
    again = _rollout(f, regions=["North"], target_version="5.9.2")
    assert {disjoint.state, other_model.state, again.state} <= {"PENDING", "RUNNING"}
    f.run(DAY)
    assert disjoint.counters["targeted"] == int(_esme_target(f, (Csp.CENTRAL,)).sum())
    assert again.counters["targeted"] == int(_esme_target(f, (Csp.NORTH,)).sum())


# -- switch-off x swap programme x VWAN fallback ---------------------------------------------------

def _central(f: LocalFleet, wan: int) -> np.ndarray:
    c, n = cols(f)
    return (AREA_CSP[c["area"][:n]] == Csp.CENTRAL) & (c["wan"][:n] == wan) & dcc(f) & (c["fault"][:n] == 0)


def test_a_switched_off_hub_is_dark_until_its_4g_swap_and_the_swaps_take_the_doomed_network_first():
    f = fleet(hubs=16_384)
    g3 = _central(f, WanTech.G3)
    swap = f.submit({"type": "swap_programme", "region": "Central", "installs_per_day": 100, "prioritise": "3G"})
    f.submit({"type": "network_switch_off", "region": "Central", "technology": "3G"})
    darks = [int(s.dark_by_reason[Csp.CENTRAL, -1]) for s in f.run(3 * DAY)]
    c, n = cols(f)
    assert int(g3.sum()) > 300  # more than three days' capacity
    # Each day's 100 installs (from the tick the first budget lands) are all 3G hubs, which come
    # back on 4G; the rest of Central's 3G stays dark.
    assert swap.counters["swapped"] == 300
    assert int((g3 & (c["wan"][:n] == WanTech.G4)).sum()) == 300
    assert darks[-1] == int(g3.sum()) - 300 and darks[0] == int(g3.sum())
    assert int(f.step().reachable_hubs[Csp.CENTRAL]) == int(_central(f, WanTech.G4).sum()
                                                                    + _central(f, WanTech.G2).sum()
                                                                    + _central(f, WanTech.VWAN).sum())


def test_vwan_and_swaps_in_one_region_never_take_the_same_hub_and_vwan_takes_only_dark_or_no_wan_hubs():
    f = fleet(hubs=16_384)
    c, n = cols(f)
    wan0 = c["wan"][:n].copy()
    central = (AREA_CSP[c["area"][:n]] == Csp.CENTRAL) & dcc(f)
    swap = f.submit({"type": "swap_programme", "region": "Central", "installs_per_day": 60, "prioritise": "3G"})
    vwan = f.submit({"type": "vwan_fallback", "region": "Central", "onboard_per_day": 80})
    f.submit({"type": "network_switch_off", "region": "Central", "technology": "3G"})
    f.run(4 * DAY)
    wan = c["wan"][:n]
    to_4g = central & (wan == WanTech.G4) & (wan0 != WanTech.G4)
    to_vwan = central & (wan == WanTech.VWAN) & (wan0 != WanTech.VWAN)
    assert swap.counters["swapped"] == int(to_4g.sum()) == 4 * 60
    assert vwan.counters["onboarded"] == int(to_vwan.sum()) == 4 * 80
    # From no WAN or a switched-off network only (3G, which the swaps also work through).
    assert set(np.unique(wan0[to_vwan]).tolist()) <= {int(WanTech.NONE), int(WanTech.G3)}
    assert set(np.unique(wan0[to_4g]).tolist()) == {int(WanTech.G3)}
    # Every Central 3G hub is on 4G, on VWAN or still dark; none both.
    g3_0 = central & (wan0 == WanTech.G3) & ((c["fault"][:n] & ~np.uint8(Fault.NO_COVERAGE)) == 0)
    left = g3_0 & (wan == WanTech.G3)
    assert int(g3_0.sum()) == int((g3_0 & to_4g).sum() + (g3_0 & to_vwan).sum() + left.sum())


def test_the_csp_service_lists_every_window_and_when_the_network_went_off():
    """ListSwitchOffs gives each window (a switch-off and an incident inside it are two);
    GetNetworkState gives, for a network off now, the start of the stretch it is off in."""
    import asyncio
    from types import SimpleNamespace

    from twin.generated.csp.v1 import csp_pb2
    from twin.services.csp_servicer import CspServicer

    f = fleet()
    f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": "1h"})
    f.submit({"type": "csp_incident", "region": "South", "duration_min": 30, "at": "3h"})
    f.submit({"type": "csp_incident", "region": "South", "duration_min": 60, "at": "3h30m"})
    sup = SimpleNamespace(network_view=lambda: f.planner.network, config=f.config, tick=7, history=[])
    svc = CspServicer(sup)
    listed = asyncio.run(svc.ListSwitchOffs(csp_pb2.ListSwitchOffsRequest(parent="regions/south"), None))

    def t(tick: int | None) -> datetime | None:
        return None if tick is None else f.config.time_of(tick).replace(tzinfo=None)

    got = [(w.technology, w.off_from.ToDatetime(), w.on_from.ToDatetime() if w.HasField("on_from") else None)
           for w in listed.switch_offs]
    assert got == [("3G", t(2), None), ("2G", t(6), t(7)), ("3G", t(6), t(7)), ("2G", t(7), t(9)),
                   ("3G", t(7), t(9))]
    state = asyncio.run(svc.GetNetworkState(csp_pb2.GetNetworkStateRequest(name="regions/south"), None))
    by_tech = {x.technology: x for x in state.technologies}
    assert not by_tech["3G"].up and by_tech["3G"].off_from.ToDatetime() == t(2)
    assert not by_tech["2G"].up and by_tech["2G"].off_from.ToDatetime() == t(6)  # two incidents back to back
    assert by_tech["4G"].up and not by_tech["4G"].HasField("off_from")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(10, 200)), min_size=1, max_size=5),
       st.one_of(st.none(), st.integers(0, 16)))
def test_property_a_network_is_off_exactly_in_the_union_of_its_incidents_and_switch_off(incidents, switch_off):
    """CSP incidents (start tick, minutes) in the South and perhaps a 3G switch-off: South's 3G is
    off at a tick exactly when one of them covers it, in the planner and on the shards alike."""
    f = fleet(hubs=2_048, seed=5)
    for at, minutes in incidents:
        f.submit({"type": "csp_incident", "region": "South", "duration_min": minutes, "at": at})
    if switch_off is not None:
        f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": switch_off})
    covered = set()
    for at, minutes in incidents:
        covered |= set(range(at, at + max(1, round(minutes * 60 / TICK_SECONDS))))
    expect = [t not in covered and (switch_off is None or t < switch_off) for t in range(20)]
    assert [bool(f.planner.network.up(t)[Csp.SOUTH, WanTech.G3]) for t in range(20)] == expect
    f.run(20)
    assert [bool(f.network.up(t)[Csp.SOUTH, WanTech.G3]) for t in range(20)] == expect


def test_a_rollout_by_supplier_stops_at_premises_its_supplier_loses_to_a_failure():
    """OVO's rollout and OVO's failure at once: every customer moves to the SoLR in the tick the
    first day's allowance lands (tick 4), before any image could be activated (transfer, then
    activation the tick after): nothing is activated and every targeted device leaves the rollout."""
    f = fleet(hubs=16_384, transfer_failure=0.0)
    c, n = cols(f)
    fw0 = c["esme_fw"][:n].copy()
    op = _rollout(f, suppliers=["OVO Energy"], concurrency_per_csp=40)
    f.submit({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas", "daily_cap": 100_000})
    f.run(DAY)
    target = _esme_target(f) & (fw0 != c["esme_fw"][:n])
    assert op.state == "DONE" and op.counters["activated"] == 0 and not target.any()
    assert op.counters["cancelled"] == op.counters["left_supplier"] == op.counters["targeted"] > 0
    assert op.reason == f"{op.counters['targeted']} devices left the rollout's suppliers before activation"
