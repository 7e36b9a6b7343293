"""Operator events through the engine: journaled before acknowledgement, identical across shard
layouts and equal to the in-process model."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.conftest import quiet_params
from tests.integration.conftest import run_dir
from twin.engine.operations import operation_view
from twin.engine.supervisor import FleetSupervisor
from twin.model.catalog import Csp, Smets, WanTech
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=30_000, seed=23, block_size=1024)
EVENTS = [
    {"type": "firmware_rollout", "device": "GSME", "manufacturer": "Flonidan", "model": "G4SZV-1",
     "target_version": "1.6.0", "concurrency_per_csp": 300, "waves": [0.1, 1.0]},
    {"type": "supplier_failure", "supplier": "EDF Energy", "solr": "Octopus Energy", "daily_cap": 900, "at": "1h"},
    {"type": "network_switch_off", "region": "Central", "technology": "2G", "at": "6h"},
    {"type": "swap_programme", "region": "Central", "installs_per_day": 400, "prioritise": "2G"},
    {"type": "power_outage", "area": "Yorkshire", "fraction": 0.4, "duration_min": 45, "at": "3h"},
]
TICKS = 96


@pytest.fixture(scope="module")
def reference():
    f = LocalFleet(CFG)
    for e in EVENTS:
        f.submit(dict(e))
    return [s.to_dict() for s in f.run(TICKS)], f.state_hash()


@pytest.mark.parametrize("shards", [1, 3])
def test_events_on_the_engine_match_the_model_for_any_shard_count(shards, reference):
    summaries, state_hash = reference
    sup = FleetSupervisor(CFG, shards=shards, run_dir=run_dir(f"ev{shards}"))
    try:
        ops = [sup.submit(dict(e)) for e in EVENTS]
        assert [o["name"] for o in ops] == [f"operations/{e['type'].replace('_', '-')}-{i}"
                                           for i, e in enumerate(EVENTS, 1)]
        assert [s.to_dict() for s in sup.step(TICKS)] == summaries
        assert sup.state_hash() == state_hash
        views = {v["name"]: v for v in sup.operations()}
        assert views["operations/power-outage-5"]["done"]
        # GSME images take days over the HAN: within two days they are still arriving.
        progress = views["operations/firmware-rollout-1"]["metadata"]["progress"]
        assert progress.transferring > 0 and progress.targeted > progress.waiting
    finally:
        sup.shutdown()


def test_accepted_commands_are_on_disk_before_the_acknowledgement_and_rejected_ones_never():
    d = run_dir("journal")
    sup = FleetSupervisor(CFG, shards=2, run_dir=d)
    try:
        sup.step(3)
        ack = sup.submit({"type": "power_outage", "area": 12, "fraction": 0.1, "duration_min": 30, "at": "1h"})
        lines = (d / "journal.jsonl").read_text().splitlines()
        assert len(lines) == 1
        rec = json.loads(lines[0])
        assert rec["command"]["type"] == "power_outage" and rec["command"]["at"] == 3 + 2
        assert ack["name"] == "operations/power-outage-1" and not ack["done"]
        for bad in ({"type": "power_outage", "area": 99, "duration_min": 5},
                    {"type": "power_outage", "area": 12, "duration_min": 5, "at": 1},
                    {"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
                     "target_version": "9", "suppliers": ["Rebel Energy"], "regions": ["North"],
                     "from_versions": ["5.0.2"]}):
            with pytest.raises(TwinInputError):
                sup.submit(bad)
        assert len((d / "journal.jsonl").read_text().splitlines()) == 1
        assert len(sup.operations()) == 1
        manifest = json.loads((d / "manifest.json").read_text())
        assert manifest["config"]["seed"] == CFG.seed and manifest["versions"]["ray"]
        assert [c.kind for c in sup.journal.commands()] == ["power_outage"]
    finally:
        sup.shutdown()


def test_operation_controls_through_the_engine():
    sup = FleetSupervisor(CFG, shards=2, run_dir=run_dir("ctl"))
    try:
        op = sup.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
                         "target_version": "5.9.0", "concurrency_per_csp": 50, "waves": [1.0]})
        sup.step(10)
        sup.submit({"type": "operation_control", "operation": op["name"].split("/")[1], "action": "cancel"})
        sup.step(8)
        view = sup.operation(op["name"])
        assert view["done"] and view["error"]["code"] == 1
        assert view["metadata"]["progress"].cancelled > 0
        with pytest.raises(TwinInputError):
            sup.operation("operations/nope")
    finally:
        sup.shutdown()


# Device-changing Service Requests as the DCC service builds them: one every two ticks, to hubs
# over both shards; some hubs are unreachable and fail at the deadline, some 2.2s are refused.
SRS = [("2.2", {"amount_pence": 700}), ("1.1.1", {"unit_rate_pence": 24.5}), ("7.2", {}), ("7.1", {}),
       ("8.14.3", {}), ("8.14.1", {})]
SR_PLAN = [(2 + 2 * i, {"type": "service_request", "srv": SRS[i % len(SRS)][0], "hub": (i * 1543) % CFG.hubs,
                        "user_id": "test", "request_id": f"r-{i}", "params": SRS[i % len(SRS)][1],
                        "deadline_days": 0.25}) for i in range(20)]
SR_END = 64


def _views(ops) -> dict:
    return {f"operations/{op.name}": operation_view(op, CFG) for op in ops}


def test_service_requests_retire_and_survive_a_kill_a_rewind_and_a_resume():
    ref = LocalFleet(CFG)
    for tick, ev in SR_PLAN:
        ref.run(tick - ref.tick)
        ref.submit(dict(ev))
    ref.run(SR_END - ref.tick)
    ref_views = _views(ref.planner.ops.values())
    assert {v["metadata"]["state"] for v in ref_views.values()} == {"DONE", "FAILED"}

    d = run_dir("sr")
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12)
    try:
        for tick, ev in SR_PLAN:
            sup.step(tick - sup.tick)
            sup.submit(dict(ev))
            if tick == 30:  # requests in flight, checkpoint 23 behind: a shard process dies
                os.kill(sup.info()[0]["pid"], signal.SIGKILL)
        last = sup.step(SR_END - sup.tick)[-1]
        assert sup.recoveries and sup.state_hash() == ref.state_hash()
        assert {v["name"]: v for v in sup.operations()} == ref_views
        assert sup.operation("operations/service-request-1") == ref_views["operations/service-request-1"]
        # Every request settled: no shard steps or reports any of them, the planner watches none.
        assert [i["live_operations"] for i in sup.info()] == [0, 0]
        assert last.ops == {} and sup.planner.live == {}

        sup.rewind(30)
        sup.run_until(SR_END)
        assert sup.state_hash() == ref.state_hash()
        assert {v["name"]: v for v in sup.operations()} == ref_views
    finally:
        sup.shutdown()

    again = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12, resume=True)
    try:
        assert again.resumed_from == 59
        again.run_until(SR_END + 8)
        ref.run(8)
        assert again.state_hash() == ref.state_hash()
        assert {v["name"]: v for v in again.operations()} == ref_views
        assert [i["live_operations"] for i in again.info()] == [0, 0]
    finally:
        again.shutdown()


# Overlapping events (docs/event-interactions.md): a 2-minute cut then an hour's on the same
# premises, a second share of the area, a CSP incident inside a switch-off of the same network.
OVERLAP_CFG = FleetConfig(hubs=12_000, seed=29, block_size=1024, params=quiet_params())
OVERLAP_EVENTS = [
    {"type": "power_outage", "area": "London", "duration_min": 2, "onset_spread_s": 0, "at": "1h"},
    {"type": "power_outage", "area": "London", "duration_min": 60, "onset_spread_s": 100, "at": "1h"},
    {"type": "power_outage", "area": "South East England", "fraction": 0.5, "duration_min": 30, "at": "1h"},
    {"type": "power_outage", "area": "South East England", "fraction": 0.5, "duration_min": 45, "at": "90m"},
    {"type": "network_switch_off", "region": "South", "technology": "3G", "at": "2h"},
    {"type": "csp_incident", "region": "South", "duration_min": 30, "at": "3h"},
]


@pytest.mark.parametrize("shards", [1, 3])
def test_overlapping_outages_raise_one_ad1_per_premises_dark_for_the_hour_on_any_shard_count(shards):
    ref = LocalFleet(OVERLAP_CFG)
    for e in OVERLAP_EVENTS:
        ref.submit(dict(e))
    st = ref.states[0]
    c, n = st.cols, st.n_hubs
    # London's DCC premises whose alerts reach the DCC (the outage starts before the switch-off).
    london = (c["area"][:n] == 12) & (c["smets"][:n] != Smets.SMETS1_NOT_ENROLLED) & (c["fault"][:n] == 0)
    summaries = [s.to_dict() for s in ref.run(12)]
    sup = FleetSupervisor(OVERLAP_CFG, shards=shards, run_dir=run_dir(f"overlap{shards}"))
    try:
        for e in OVERLAP_EVENTS:
            sup.submit(dict(e))
        got = sup.step(12)
        assert [s.to_dict() for s in got] == summaries
        assert sup.state_hash() == ref.state_hash()
        london_ad1 = sum(int(s.area_alerts[12]) for s in got[:3])  # AD1s only, before any restoration
        assert london_ad1 == int(london.sum()) > 0
        # The switch-off outlives the incident inside it: South's 3G is still off at the end.
        assert not sup.planner.network.up(11)[Csp.SOUTH, WanTech.G3]
    finally:
        sup.shutdown()
