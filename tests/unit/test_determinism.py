"""A run is a function of its seed: identical state for any split of the fleet."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.network import NetworkPlan
from twin.model.query import hub_record


def test_same_seed_same_hash_and_different_seed_differs(small_config):
    a, b = LocalFleet(small_config), LocalFleet(small_config)
    a.run(100)
    b.run(100)
    assert a.state_hash() == b.state_hash()
    c = LocalFleet(replace(small_config, seed=small_config.seed + 1))
    c.run(100)
    assert c.state_hash() != a.state_hash()


def test_the_hash_sees_every_change(small_config):
    f = LocalFleet(small_config)
    f.run(3)
    h = f.state_hash()
    f.states[0].cols["gsme_battery"][17] += 1
    assert f.state_hash() != h


def test_one_two_and_seven_splits_give_identical_state_and_summaries(small_config):
    fleets = [LocalFleet(small_config, splits=k) for k in (1, 2, 7)]
    assert [len(f.states) for f in fleets] == [1, 2, 7]
    runs = [[s.to_dict() for s in f.run(150)] for f in fleets]
    assert runs[0] == runs[1] == runs[2]
    assert len({f.state_hash() for f in fleets}) == 1
    # And the runs did something worth comparing.
    assert sum(r["messages"]["North"]["DAILY_READ"] for r in runs[0]) > 0
    assert sum(sum(a.values()) for r in runs[0] for a in r["alerts"].values()) > 0


def test_a_hub_is_the_same_whatever_the_fleet_size():
    small = FleetConfig(hubs=3_000, seed=4, block_size=1024)
    big = FleetConfig(hubs=9_000, seed=4, block_size=1024)
    fs, fb = LocalFleet(small), LocalFleet(big)
    up = NetworkPlan().up_by_area(0)
    for hub in (0, 1500, 2999):
        assert hub_record(fs.state_for(hub), small, up, hub, 0) == hub_record(fb.state_for(hub), big, up, hub, 0)


def test_summaries_are_integers_so_merging_is_exact(small_config):
    s = LocalFleet(small_config).run(2)[-1]
    for arr in (s.messages, s.alerts, s.reachable_hubs, s.dark_by_reason):
        assert np.issubdtype(arr.dtype, np.integer)


def test_premises_facts_agree_with_the_hub_record(small_config):
    from twin.model.catalog import Csp, WanTech, supplier_code
    from twin.model.query import premises

    f = LocalFleet(small_config)
    f.run(60)  # faults and outages under way
    plan = NetworkPlan()
    plan.switch_off(Csp.CENTRAL, WanTech.G3, 0)  # some hubs dark because their network is off
    up = plan.up_by_area(60)
    seen = set()
    for hub in range(0, small_config.hubs, 7):
        state = f.state_for(hub)
        rec, p = hub_record(state, small_config, up, hub, 60), premises(state, up, hub)
        assert (p["area_id"], p["region"], p["reachable"], p["dcc_connected"], p["has_gas"]) == (
            rec["area"]["id"], rec["region"], rec["reachable"], rec["dcc_connected"], rec["gas_supplier"] is not None)
        assert p["supplier_code"] == supplier_code(rec["supplier"])
        assert p["gas_supplier_code"] == (supplier_code(rec["gas_supplier"]) if rec["gas_supplier"] else 0)
        seen.add((p["reachable"], p["has_gas"], "network switched off" in rec["dark_reasons"]))
    assert {(True, True, False), (False, True, True), (False, False, True)} <= seen  # the cases that matter occur
