"""Operator events in the model: exact structural outcomes, statistics, control, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import quiet_params
from twin.model.catalog import AREA_CSP, Csp, DeviceType, Fault, Smets, WanTech, model_code, supplier_code
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.params import HALF_HOURS_PER_DAY, EventParams, ModelParams

DAY = HALF_HOURS_PER_DAY


def quiet_fleet(hubs: int = 40_000, seed: int = 31, splits: int = 1, **events) -> LocalFleet:
    params = quiet_params()
    if events:
        params = replace(params, events=replace(EventParams(), **events))
    return LocalFleet(FleetConfig(hubs=hubs, seed=seed, block_size=1024, params=params), splits=splits)


def reachable_mask(f: LocalFleet) -> np.ndarray:
    st = f.states[0]
    n = st.n_hubs
    c = st.cols
    up = f.network.up_by_area(f.tick - 1)
    return (c["smets"][:n] != Smets.SMETS1_NOT_ENROLLED) & (c["fault"][:n] == 0) & up[c["area"][:n], c["wan"][:n]]


def test_3g_switch_off_in_central_darkens_exactly_the_central_3g_hubs():
    f = quiet_fleet()
    f.run(2)
    before = reachable_mask(f)
    f.submit({"type": "network_switch_off", "region": "Central", "technology": "3G"})
    f.run(2)
    after = reachable_mask(f)
    st = f.states[0]
    c, n = st.cols, st.n_hubs
    central_3g = (AREA_CSP[c["area"][:n]] == Csp.CENTRAL) & (c["wan"][:n] == WanTech.G3)
    newly_dark = before & ~after
    assert newly_dark.sum() > 1000
    np.testing.assert_array_equal(newly_dark, before & central_3g)
    assert not (after & central_3g).any()
    s = f.run(1)[-1]
    assert s.dark_by_reason[:, -1].sum() == (before & central_3g).sum()  # "network switched off"


def test_solr_moves_exactly_the_failed_suppliers_customers_within_the_daily_cap():
    f = quiet_fleet(hubs=60_000)
    st = f.states[0]
    c, n = st.cols, st.n_hubs
    failed, solr = supplier_code("OVO Energy"), supplier_code("British Gas")
    elec0, gas0 = c["supplier"][:n].copy(), c["gas_supplier"][:n].copy()
    customers = (elec0 == failed) | (gas0 == failed)
    cap = 1_500
    op = f.submit({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas", "daily_cap": cap})
    moved_by_tick = [s.ops.get(op.name, {}).get("moved", 0) for s in f.run(12 * DAY)]
    assert op.counters["moved"] == customers.sum()
    # Never more than the cap on any day (days counted from the failure).
    per_day = np.diff([0] + [moved_by_tick[d * DAY + DAY - 1] for d in range(12)])
    assert per_day.max() == cap and (per_day <= cap).all()
    elec, gas = c["supplier"][:n], c["gas_supplier"][:n]
    assert not ((elec == failed) | (gas == failed)).any()
    np.testing.assert_array_equal(elec[~customers], elec0[~customers])
    np.testing.assert_array_equal(gas[~customers], gas0[~customers])
    assert (elec[elec0 == failed] == solr).all() and (gas[gas0 == failed] == solr).all()
    # Other fuel stays with its supplier when only one fuel was with the failed one.
    only_gas = (gas0 == failed) & (elec0 != failed)
    np.testing.assert_array_equal(elec[only_gas], elec0[only_gas])
    # SMETS1 not enrolled in the DCC lost smart function; the rest kept it.
    counts = op.counters
    assert counts["dumb"] == (customers & (c["smets"][:n] == Smets.SMETS1_NOT_ENROLLED)).sum()
    assert counts["switched_smart"] + counts["dumb"] + counts["failed"] + counts["pending"] == customers.sum()


def _rollout(f: LocalFleet, **kw):
    ev = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
          "target_version": "5.9.0", "waves": [0.05, 1.0], "concurrency_per_csp": 3000, "min_wave_sample": 50}
    ev.update(kw)
    return f.submit(ev)


def test_a_rollout_never_touches_devices_outside_its_selector():
    f = quiet_fleet(transfer_failure=0.0)
    st = f.states[0]
    c, n = st.cols, st.n_hubs
    before = {k: c[k][:n].copy() for k in ("ch_fw", "esme_fw", "gsme_fw", "ppmid_fw")}
    op = _rollout(f, regions=["North", "South"], suppliers=["Octopus Energy", "E.ON Next"], from_versions=["5.0.2"],
                  failure_prob=0.0, brick_prob=0.0, max_days=2)
    f.run(3 * DAY)
    assert op.state == "DONE", op.reason
    esme_code = model_code(DeviceType.ESME, "EDMI", "ES-10A")
    selected = ((c["esme_model"][:n] == esme_code) & (before["esme_fw"] == 0)
                & np.isin(AREA_CSP[c["area"][:n]], [Csp.NORTH, Csp.SOUTH])
                & np.isin(c["supplier"][:n], [supplier_code("Octopus Energy"), supplier_code("E.ON Next")]))
    changed = c["esme_fw"][:n] != before["esme_fw"]
    assert changed.sum() > 50
    assert not (changed & ~selected).any()
    assert op.counters["targeted"] == selected.sum()
    assert op.counters["distributed"] == op.counters["activated"] + op.counters["failed"]  # no transfer failed
    for k in ("ch_fw", "gsme_fw", "ppmid_fw"):
        np.testing.assert_array_equal(c[k][:n], before[k])


def test_rollout_failures_fall_inside_a_99_9_percent_binomial_interval():
    p = 0.08
    f = quiet_fleet(hubs=60_000, transfer_failure=0.0)
    # Premises without WAN never receive the image: the rollout closes on them after max_days.
    op = _rollout(f, failure_prob=p, brick_prob=0.0, halt_failure_rate=1.0, max_days=2)
    f.run(4 * DAY)
    assert op.state == "DONE", op.reason
    n = op.counters["activated"] + op.counters["failed"]
    failed = op.counters["failed"]
    half = 3.29 * np.sqrt(n * p * (1 - p))
    assert n > 1000
    assert n * p - half <= failed <= n * p + half, (failed, n * p, half)


def test_a_bad_batch_halts_itself_in_the_canary_wave():
    f = quiet_fleet(hubs=60_000)
    op = _rollout(f, failure_prob=0.3, waves=[0.05, 0.5, 1.0], halt_failure_rate=0.05)
    f.run(2 * DAY)
    assert op.state == "HALTED"
    assert "wave 0" in op.reason
    # Nothing beyond the canary wave was ever started.
    started = op.counters["activated"] + op.counters["failed"] + op.counters["bricked"]
    assert 0 < started <= op.counters["wave0_total"]
    assert op.counters["cancelled"] >= op.counters["targeted"] - op.counters["wave0_total"]
    assert op.done and op.allowed_actions() == set()


def test_pause_resume_and_cancel():
    f = quiet_fleet(hubs=60_000)
    op = _rollout(f, waves=[1.0], concurrency_per_csp=40, failure_prob=0.0)
    f.run(10)
    f.submit({"type": "operation_control", "operation": op.name, "action": "pause"})
    f.run(6)  # the pause reaches the shards; in-flight work finishes
    frozen = op.counters["activated"]
    f.run(10)
    assert op.state == "PAUSED"
    assert op.counters["activated"] == frozen and op.counters["transferring"] == 0
    f.submit({"type": "operation_control", "operation": op.name, "action": "resume"})
    f.run(12)
    assert op.counters["activated"] > frozen
    f.submit({"type": "operation_control", "operation": op.name, "action": "cancel"})
    f.run(6)
    after_cancel = op.counters["activated"]
    f.run(10)
    assert op.state == "CANCELLED"
    assert op.counters["activated"] == after_cancel
    assert op.counters["cancelled"] > 0 and op.counters["waiting"] == 0
    with pytest.raises(TwinInputError):
        f.submit({"type": "operation_control", "operation": op.name, "action": "resume"})


def test_a_paused_churn_campaign_switches_nobody_until_resumed():
    f = quiet_fleet(hubs=40_000)
    op = f.submit({"type": "churn_campaign", "switches_per_month": 400_000, "days": 3})
    f.run(6)
    f.submit({"type": "operation_control", "operation": op.name, "action": "pause"})
    f.run(4)  # the pause reaches the shards
    paused_at = op.counters["switches"]
    assert paused_at > 0
    f.run(10)
    assert op.state == "PAUSED" and op.counters["switches"] == paused_at
    f.submit({"type": "operation_control", "operation": op.name, "action": "resume"})
    f.run(10)
    assert op.counters["switches"] > paused_at


def test_an_operation_cancelled_before_it_starts_never_happens():
    from twin.model.catalog import AREA_BY_ID

    f = quiet_fleet(hubs=40_000)
    outage = f.submit({"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 60, "at": "3h"})
    switch_off = f.submit({"type": "network_switch_off", "region": "Central", "technology": "3G", "at": "4h"})
    kept = f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": "4h"})
    f.run(2)
    for op in (outage, switch_off):
        f.submit({"type": "operation_control", "operation": op.name, "action": "cancel"})
    central = next(a.id for a in AREA_BY_ID.values() if a.region == Csp.CENTRAL)
    ss = f.run(12)
    assert outage.state == switch_off.state == "CANCELLED" and outage.reason == "cancelled before it started"
    assert outage.counters.get("premises_cut", 0) == 0 and sum(int(s.alerts[:, 0].sum()) for s in ss) == 0
    up = f.planner.network.up(14)
    assert up[Csp.CENTRAL, WanTech.G3] and not up[Csp.SOUTH, WanTech.G3]  # only the kept one
    assert f.planner.network.up_by_area(14)[central, WanTech.G3]
    assert kept.state == "DONE"
    # And the shards agree: Central's 3G hubs are reachable, South's are dark.
    reach = reachable_mask(f)
    c, n = f.states[0].cols, f.states[0].n_hubs
    g3 = c["wan"][:n] == WanTech.G3
    assert reach[g3 & (AREA_CSP[c["area"][:n]] == Csp.CENTRAL)].mean() > 0.9
    assert reach[g3 & (AREA_CSP[c["area"][:n]] == Csp.SOUTH)].sum() == 0


def test_swap_programme_respects_capacity_and_priority():
    f = quiet_fleet(hubs=60_000)
    op = f.submit({"type": "swap_programme", "region": "Central", "installs_per_day": 400, "prioritise": "3G"})
    st = f.states[0]
    c, n = st.cols, st.n_hubs
    g2_before = ((c["wan"][:n] == WanTech.G2) & (AREA_CSP[c["area"][:n]] == Csp.CENTRAL)).sum()
    swapped = [s.ops.get(op.name, {}).get("swapped", 0) for s in f.run(3 * DAY + 8)]
    per_day = np.diff([0] + [swapped[d * DAY + DAY - 1] for d in range(3)])
    assert (per_day == 400).all()
    g2_after = ((c["wan"][:n] == WanTech.G2) & (AREA_CSP[c["area"][:n]] == Csp.CENTRAL)).sum()
    assert g2_after == g2_before  # 3G hubs first while any remain


def test_single_switch_waits_for_the_wan_and_smets1_not_enrolled_goes_dumb():
    f = quiet_fleet()
    st = f.states[0]
    c, n = st.cols, st.n_hubs
    s2 = np.flatnonzero((c["smets"][:n] == Smets.SMETS2) & (c["fault"][:n] == 0))
    dark_hub, ok_hub = int(s2[3]), int(s2[4])
    ne_hub = int(np.flatnonzero(c["smets"][:n] == Smets.SMETS1_NOT_ENROLLED)[0])
    st.change(np.array([dark_hub]), fault_set=Fault.HARDWARE)
    ops = [f.submit({"type": "supplier_switch", "hub": h, "to_supplier": "Octopus Energy", "fuel": "electricity"})
           for h in (ok_hub, dark_hub, ne_hub)]
    f.run(8)
    assert ops[0].counters["switched_smart"] == 1 and ops[0].state == "DONE"
    assert ops[1].counters["pending"] == 1 and ops[1].state == "RUNNING"
    assert ops[2].counters["dumb"] == 1
    assert c["supplier"][dark_hub] == supplier_code("Octopus Energy")
    st.change(np.array([dark_hub]), fault_clear=Fault.HARDWARE)
    f.run(8)
    assert ops[1].counters["switched_smart"] == 1 and ops[1].state == "DONE"


def test_area_power_outage_cuts_the_right_share_and_raises_a_storm():
    f = quiet_fleet(hubs=100_000)
    op = f.submit({"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 60,
                   "alert_backoff_s": 0, "onset_spread_s": 0, "at": "1h"})
    ss = f.run(6)
    in_area = op.counters["premises_in_area"]
    cut = op.counters["premises_cut"]
    assert abs(cut - in_area / 2) < 4 * np.sqrt(in_area / 4)
    ad1 = sum(int(s.alerts[:, 0].sum()) for s in ss)
    restored = sum(int(s.alerts[:, 1].sum()) for s in ss)
    assert 0.9 * cut < ad1 <= cut  # DCC hubs among them (off-DCC ones send nothing)
    assert restored == ad1
    # No back-off and one onset second: every AD1 goes in the same second.
    assert max(s.peak_alerts_per_s for s in ss) == ad1


def test_events_give_identical_results_for_one_and_several_splits():
    events = [
        {"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
         "target_version": "5.9.0", "concurrency_per_csp": 500, "waves": [0.1, 1.0]},
        {"type": "supplier_failure", "supplier": "OVO Energy", "solr": "British Gas", "daily_cap": 800, "at": "2h"},
        {"type": "churn_campaign", "switches_per_month": 30_000, "days": 2},
        {"type": "swap_programme", "region": "South", "installs_per_day": 500, "prioritise": "3G"},
        {"type": "network_switch_off", "region": "South", "technology": "3G", "at": "1d"},
        {"type": "vwan_fallback", "region": "South", "onboard_per_day": 300, "at": "1d"},
        {"type": "power_outage", "area": 20, "fraction": 0.3, "duration_min": 90, "at": "5h"},
        {"type": "csp_incident", "region": "North", "duration_min": 60, "at": "7h"},
    ]
    runs = []
    for splits in (1, 2, 7):
        f = LocalFleet(FleetConfig(hubs=30_000, seed=5, block_size=1024), splits=splits)
        for e in events:
            f.submit(dict(e))
        runs.append(([s.to_dict() for s in f.run(2 * DAY)], f.state_hash(),
                     {n: (op.state, op.counters) for n, op in f.planner.ops.items()}))
    assert runs[0] == runs[1] == runs[2]
    assert any(v[1].get("activated", 0) > 0 for v in runs[0][2].values())


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "firmware_rollout", "device": "ESME", "manufacturer": "Acme", "model": "X1",
          "target_version": "1"}, "model"),
        ({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
          "target_version": "5.9", "suppliers": ["Utilita"], "regions": ["North"], "from_versions": ["5.0.2"],
          "at": "-1h"}, "at"),
        ({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
          "target_version": "5.0.2"}, "target_version"),
        ({"type": "firmware_rollout", "device": "GSME", "manufacturer": "EDMI", "model": "ES-10A",
          "target_version": "9"}, "model"),
        ({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
          "target_version": "9", "waves": [0.5, 0.2, 1.0]}, "waves"),
        ({"type": "power_outage", "area": "Atlantis", "duration_min": 10}, "area"),
        ({"type": "power_outage", "area": 12, "duration_min": -10}, "duration_min"),
        ({"type": "power_outage", "area": 12}, "duration_min"),
        ({"type": "network_switch_off", "region": "Central", "technology": "5G"}, "technology"),
        ({"type": "supplier_failure", "supplier": "OVO Energy", "solr": "OVO Energy"}, "solr"),
        ({"type": "supplier_switch", "hub": 10**9, "to_supplier": "Octopus Energy"}, "hub"),
        ({"type": "teleport"}, "type"),
        ({"type": "power_outage", "area": 12, "duration_min": 10, "colour": "red"}, "colour"),
        ({"type": "operation_control", "operation": "nope-1", "action": "pause"}, "operation"),
    ],
)
def test_invalid_commands_are_rejected_with_the_field_and_change_nothing(event, field):
    f = quiet_fleet(hubs=5_000)
    f.run(4)
    h = f.state_hash()
    with pytest.raises(TwinInputError) as e:
        f.submit(event)
    assert e.value.field == field, e.value
    assert f.planner.ops == {} and f.planner.pending == {}
    assert f.state_hash() == h


def test_empty_selection_and_conflicting_rollouts_are_rejected():
    f = quiet_fleet(hubs=5_000)
    with pytest.raises(TwinInputError) as e:
        # No EDMI ES-10A of Ecotricity's runs in the North in this 5,000-hub fleet (seed 31).
        _rollout(f, regions=["North"], suppliers=["Ecotricity"], from_versions=["5.0.2"], allow_downgrade=True)
    assert e.value.field == "selector"
    first = _rollout(f, regions=["North"])
    with pytest.raises(TwinInputError) as e:
        _rollout(f, regions=["North", "South"], target_version="5.9.1")
    assert e.value.field == "model" and first.name in str(e.value)
    # A disjoint selection of the same model is fine.
    _rollout(f, regions=["Central"], target_version="5.9.1")
    assert len(f.planner.ops) == 2


def test_a_downgrade_is_allowed_only_on_purpose():
    f = quiet_fleet(hubs=20_000)
    with pytest.raises(TwinInputError):
        _rollout(f, target_version="5.1.0", from_versions=["5.2.3"])
    op = _rollout(f, target_version="5.1.0", from_versions=["5.2.3"], allow_downgrade=True)
    assert op.state == "PENDING"


def test_activation_on_power_cutting_models_raises_false_outage_alerts():
    f = quiet_fleet(hubs=60_000)
    op = f.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": "Landis & Gyr",
                   "model": "E470-5394", "target_version": "3.3.0", "waves": [1.0], "failure_prob": 0.0,
                   "brick_prob": 0.0})
    ss = f.run(DAY)
    ad1 = sum(int(s.alerts[:, 0].sum()) for s in ss)
    assert op.counters["activated"] > 100
    # Every activation cuts the hub's power for 200-420 s (> 3 minutes): one false AD1 each,
    # unless the back-off pushes it past the end of the cut.
    assert 0.5 * op.counters["activated"] < ad1 <= op.counters["activated"]


def test_model_params_still_round_trip_with_event_params():
    p = ModelParams()
    assert ModelParams.from_dict(p.to_dict()) == p
