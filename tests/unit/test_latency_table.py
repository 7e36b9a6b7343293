"""The engine's response-time table (twin.engine.latency) gives exactly what the capacity model's
`NetworkQueues.response_time` says, for every link, message type and North base station, and
survives the wire an API replica reads it from."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.engine.latency import LatencyTable
from twin.model.catalog import N_WAN, Csp, MessageType, WanTech
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import NORTH_BASE_STATIONS, CapacityParams, ModelParams

# North base stations and the South's 2G at a fraction of their design: queues at both.
CAP = CapacityParams(base_station_factor=0.02, link_capacity_factor={"SOUTH/G2": 0.05})
FLEET = LocalFleet(FleetConfig(hubs=8192, seed=5, block_size=1024, params=ModelParams(capacity=CAP)))
FLEET.run(2)
TABLE = LatencyTable.of(FLEET.planner.queues, CAP, FLEET.planner.observed)


def test_the_congested_stages_queue():
    assert TABLE.tick == 1
    assert TABLE.cell_wait_s.size == NORTH_BASE_STATIONS and TABLE.cell_wait_s.max() > 0
    south_g2 = TABLE.seconds(csp=Csp.SOUTH, wan=WanTech.G2, cell=-1, message=MessageType.ON_DEMAND_READ)
    central_g2 = TABLE.seconds(csp=Csp.CENTRAL, wan=WanTech.G2, cell=-1, message=MessageType.ON_DEMAND_READ)
    assert south_g2 > 60 > central_g2


@settings(max_examples=200, deadline=None)
@given(csp=st.sampled_from(list(Csp)), wan=st.sampled_from(list(WanTech)),
       cell=st.integers(-1, NORTH_BASE_STATIONS), kind=st.sampled_from(list(MessageType)))
def test_the_table_is_the_models_response_time(csp, wan, cell, kind):
    want = FLEET.planner.queues.response_time(int(csp), int(wan), cell, kind, CAP)
    # (a base station's wait is kept apart from its link's figures: equal to rounding)
    assert TABLE.seconds(csp=int(csp), wan=int(wan), cell=cell, message=kind) == pytest.approx(want, rel=1e-12, abs=0)


def test_every_link_type_and_base_station_is_the_models_response_time():
    q = FLEET.planner.queues
    for csp in Csp:
        for wan in WanTech:
            for kind in MessageType:
                want = q.response_time(int(csp), int(wan), -1, kind, CAP)
                assert TABLE.seconds(csp=int(csp), wan=int(wan), cell=-1, message=kind) == pytest.approx(want, rel=1e-12)
    for cell in range(NORTH_BASE_STATIONS):
        want = q.response_time(Csp.NORTH, WanTech.LRR, cell, MessageType.ON_DEMAND_READ, CAP)
        got = TABLE.seconds(csp=Csp.NORTH, wan=WanTech.LRR, cell=cell, message=MessageType.ON_DEMAND_READ)
        assert got == pytest.approx(want, rel=1e-12), cell


def test_the_wire_form_round_trips_and_a_wrong_size_is_refused():
    back = LatencyTable.from_lists(*TABLE.to_lists())
    assert back.tick == TABLE.tick
    assert (back.link_s == TABLE.link_s).all() and (back.cell_wait_s == TABLE.cell_wait_s).all()
    with pytest.raises(ValueError):
        LatencyTable.from_lists(0, [1.0] * 3, [])
    with pytest.raises(ValueError):
        TABLE.seconds(csp=3, wan=0, cell=0, message=MessageType.ALERT)
    with pytest.raises(ValueError):
        TABLE.seconds(csp=0, wan=N_WAN, cell=0, message=MessageType.ALERT)
