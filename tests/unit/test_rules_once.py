"""Rules written once: each fact of the model has one home, and every caller uses it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.model.catalog import N_AREA_CODES, AlertKind, Fault, Smets, WanTech
from twin.model.reach import reachable_now, wan_up
from twin.reporting.summary import ALERT_LABELS, alert_rows


def test_the_run_summary_labels_exactly_the_alert_kinds_it_prints():
    assert sorted(ALERT_LABELS) == list(AlertKind)  # every kind has its words, once
    counts = {k.name: 1000 + int(k) for k in AlertKind}
    rows = alert_rows(counts)
    assert rows[0] == ("alerts of modelled events", f"{sum(counts.values()):,}")
    assert rows[1] == ("  power outage (AD1)", "1,000")
    assert rows[9] == ("  supply armed by a top-up (8F32)", "1,008")
    assert len(rows) == 1 + len(AlertKind) and len({label for label, _ in rows}) == len(rows)


def test_the_reachability_rule_is_spelt_only_in_twin_model_reach():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "twin"
    spelt = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "generated" not in p.parts and "SMETS1_NOT_ENROLLED" in p.read_text())
    assert spelt == ["model/catalog.py", "model/reach.py"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Smets)), st.integers(0, 255), st.integers(0, N_AREA_CODES - 1),
                          st.sampled_from(list(WanTech)), st.booleans()), min_size=1, max_size=40))
def test_reachable_is_on_the_dcc_without_faults_on_a_working_network(hubs):
    smets, fault, area, wan, net = (np.array(x) for x in zip(*hubs, strict=True))
    up_area = np.zeros((N_AREA_CODES, len(WanTech)), bool)
    up_area[area[net], wan[net]] = True
    up_area[area[~net], wan[~net]] = False  # a later "down" wins for a shared (area, wan)
    got = reachable_now(smets=smets.astype(np.uint8), fault=fault.astype(np.uint8), area=area,
                        wan=wan.astype(np.uint8), up_area=up_area)
    for i, (sm, f, a, w, _) in enumerate(hubs):
        want = sm != Smets.SMETS1_NOT_ENROLLED and f == 0 and bool(up_area[a, w])
        assert bool(got[i]) == want
    # An outage alert still leaves an unpowered hub, and nothing else.
    sent = wan_up(fault.astype(np.uint8), area, wan.astype(np.uint8), up_area, ignore=Fault.POWER)
    assert sent.tolist() == [((f & ~Fault.POWER) == 0) and bool(up_area[a, w]) for _, f, a, w, _ in hubs]


MINIMAL = {
    "firmware_rollout": {"device": "ESME", "manufacturer": "EDMI", "model": "ES-10A", "target_version": "5.3.0"},
    "supplier_switch": {"hub": 3, "to_supplier": "OVO Energy"},
    "churn_campaign": {"switches_per_month": 1000},
    "supplier_failure": {"supplier": "OVO Energy", "solr": "British Gas"},
    "network_switch_off": {"region": "South", "technology": "3G"},
    "swap_programme": {"region": "Central", "installs_per_day": 50},
    "vwan_fallback": {"region": "Central"},
    "power_outage": {"area": 12, "duration_min": 30},
    "base_station_failure": {"cells": [4], "duration_min": 30},
    "csp_incident": {"region": "North", "duration_min": 30},
    "operation_control": {"operation": "power-outage-1", "action": "pause"},
    "mhhs_migration": {},
    "on_demand_reads": {"duration_min": 60},
}


def test_an_event_that_leaves_a_field_out_gets_the_command_field_default():
    import dataclasses

    from twin.model.config import FleetConfig
    from twin.model.ops.commands import COMMANDS, parse_command

    cfg = FleetConfig(hubs=2_000, seed=1)
    assert set(MINIMAL) | {"service_request"} == set(COMMANDS)
    for kind, fields in MINIMAL.items():
        cmd = parse_command({"type": kind, **fields}, cfg, now_tick=0)
        for f in dataclasses.fields(cmd):
            if f.default is not dataclasses.MISSING:
                want = cfg.params.events.image_size_kb if f.name == "image_size_kb" else f.default
                assert getattr(cmd, f.name) == want, (kind, f.name)
    # A required field has no default to fall back on: leaving it out is an input error.
    import pytest

    from twin.model.config import TwinInputError

    with pytest.raises(TwinInputError, match="installs_per_day"):
        parse_command({"type": "swap_programme", "region": "Central"}, cfg, now_tick=0)


def test_the_run_config_sets_the_default_image_size():
    from twin.model.config import FleetConfig
    from twin.model.ops.commands import parse_command

    cfg = FleetConfig.from_dict({"hubs": 2_000, "seed": 1, "params": {"events": {"image_size_kb": 900.0}}})
    cmd = parse_command({"type": "firmware_rollout", **MINIMAL["firmware_rollout"]}, cfg, now_tick=0)
    assert cmd.image_size_kb == 900.0


def test_a_rollout_census_is_the_same_however_the_fleet_is_split():
    from twin.model.config import FleetConfig
    from twin.model.fleet import LocalFleet
    from twin.model.ops.commands import parse_command
    from twin.model.ops.rollout import fleet_census, shard_census

    cfg = FleetConfig(hubs=9_000, seed=5, block_size=1024)
    cmd = parse_command({"type": "firmware_rollout", **MINIMAL["firmware_rollout"]}, cfg, now_tick=0)
    whole, split = LocalFleet(cfg), LocalFleet(cfg, splits=3)
    census = whole.census(cmd)
    assert census and sum(census.values()) > 0
    assert split.census(cmd) == census
    assert fleet_census(shard_census(st, cmd, ops.versions) for st, ops in zip(split.states, split.ops, strict=True)) == census
    other = parse_command({"type": "power_outage", "area": 12, "duration_min": 30}, cfg, now_tick=0)
    assert whole.census(other) == {}


def test_one_csp_code_from_the_area_to_the_summary_and_the_page():
    from dashboard.components import op_summary
    from twin.model.catalog import AREA_BY_ID, AREA_CSP, NO_CSP, Csp
    from twin.model.config import FleetConfig
    from twin.model.fleet import LocalFleet
    from twin.model.reach import reachable
    from twin.services.convert import command_view

    assert AREA_BY_ID[12].region == Csp.SOUTH == AREA_CSP[12] and AREA_CSP[0] == NO_CSP
    f = LocalFleet(FleetConfig(hubs=6_000, seed=2, block_size=1024))
    s = f.step()
    st = f.states[0]
    n = st.n_hubs
    reach = reachable(st, slice(0, n), f.network.up_by_area(0))
    csp = AREA_CSP[st.cols["area"][:n]]
    assert s.reachable_hubs.tolist() == [int((reach & (csp == c)).sum()) for c in Csp]
    # A switch-off in the South is held as Csp.SOUTH and shown as South on the page.
    f.submit({"type": "network_switch_off", "region": "South", "technology": "3G"})
    assert f.planner.ops["network-switch-off-1"].cmd.region == Csp.SOUTH
    # The API names the code (command_json), and the page shows the name.
    named = command_view({"type": "network_switch_off", "region": int(Csp.SOUTH), "technology": 3})
    assert named["region"] == "South"
    assert op_summary({"kind": "network_switch_off", "command": named}) == "South 3G"
