"""The network's queues are fleet-level and exact: a congested fleet with an alert storm gives the
same state and the same tick summaries, capacity figures included, for any shard layout, in
process (1, 2 and 7 splits) and on the engine (real Ray, 1 and 3 shards)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.integration.conftest import run_dir
from twin.model.catalog import AREAS, Csp, TrafficClass
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import CapacityParams, ModelParams

DAY = 48
# Central's 3G link at a fifth of its designed capacity; beyond one alert of a kind from a device
# in two hours, one copy forwarded per two hours: the storm below is throttled as well as queued.
PARAMS = ModelParams(capacity=replace(CapacityParams(), link_capacity_factor={"CENTRAL/G3": 0.2},
                                      alert_storm_threshold=1, alert_storm_window_s=7200,
                                      alert_storm_period_s=7200))
CFG = FleetConfig(hubs=20_000, seed=21, block_size=1024, params=PARAMS)
CENTRAL_AREA = next(a.name for a in AREAS if a.region == Csp.CENTRAL)
# Three short power cuts of the same area half an hour apart: its hubs send AD1 alerts three times
# in the window, the third throttled.
STORM = [{"type": "power_outage", "area": CENTRAL_AREA, "duration_min": 10, "fraction": 0.8, "at": at}
         for at in (6, 7, 8)]


def run_local(splits: int, ticks: int) -> tuple[list[dict], str]:
    f = LocalFleet(CFG, splits=splits)
    for e in STORM:
        f.submit(e)
    ss = f.run(ticks)
    return [s.to_dict() for s in ss], f.state_hash()


@pytest.fixture(scope="module")
def reference() -> tuple[list[dict], str]:
    return run_local(1, DAY + 4)


def test_the_reference_run_is_congested_and_storms(reference):
    summaries, _ = reference
    caps = [s["capacity"] for s in summaries]
    assert max(c["links"]["CENTRAL/G3"]["utilisation"] for c in caps) > 1.0
    assert max(c["links"]["CENTRAL/G3"]["backlog"] for c in caps) > 0
    assert max(c["latency_p99_s"]["Central"][TrafficClass.ON_DEMAND.name.lower().replace("_", "-")]
               for c in caps) > 30.0
    assert sum(c["alerts"]["throttled"]["Central"] for c in caps) > 0
    assert sum(c["alerts"]["delayed"]["Central"] for c in caps) > 0


@pytest.mark.parametrize("splits", [2, 7])
def test_splits_give_identical_state_and_summaries_with_congestion(splits, reference):
    summaries, state_hash = reference
    got, got_hash = run_local(splits, DAY + 4)
    assert got_hash == state_hash
    for a, b in zip(got, summaries, strict=True):
        assert a == b, f"tick {a['tick']} differs"


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("shards", [1, 3])
def test_the_engine_agrees_with_the_in_process_fleet_on_capacity(shards, reference):
    from twin.engine.supervisor import FleetSupervisor

    summaries, _ = reference
    ticks = 12
    sup = FleetSupervisor(CFG, shards=shards, run_dir=run_dir(shards))
    try:
        for e in STORM:
            sup.submit(e)
        got = [s.to_dict() for s in sup.step(ticks)]
    finally:
        sup.shutdown()
    for a, b in zip(got, summaries[:ticks], strict=True):
        assert a["capacity"] == b["capacity"], f"tick {a['tick']}"
        assert a == b
    assert np.sum([g["capacity"]["alerts"]["throttled"]["Central"] for g in got]) > 0
