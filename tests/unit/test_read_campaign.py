"""The on-demand read campaign (twin.model.ops.reads): which meters, how many reads and when,
answered or failed by reachability, the same for any shard layout, and validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import quiet_params
from twin.model.catalog import AREA_BY_ID, MessageType
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.ops.commands import OnDemandReads, command_from_dict, parse_command
from twin.model.ops.progress import OperationState
from twin.model.ops.reads import poisson_counts

READ = MessageType.ON_DEMAND_READ


def quiet_fleet(hubs: int = 30_000, splits: int = 1) -> LocalFleet:
    return LocalFleet(FleetConfig(hubs=hubs, seed=3, block_size=1024, params=quiet_params()), splits=splits)


def test_a_campaign_sends_its_reads_in_its_window_and_nothing_else_changes():
    plain = quiet_fleet()
    base = plain.run(16)
    f = quiet_fleet()
    op = f.submit({"type": "on_demand_reads", "at": "2h", "duration_min": 180, "interval_min": 45,
                   "areas": ["London"]})
    runs = f.run(16)
    extra = [int(a.messages[:, READ].sum() - b.messages[:, READ].sum()) for a, b in zip(runs, base, strict=True)]
    # Ticks 4-9 (02:00-05:00) carry the campaign's reads, the others none.
    assert all(e == 0 for e in extra[:4] + extra[10:]) and all(e > 0 for e in extra[4:10]), extra
    p = op.progress()
    assert sum(extra) == p.answered and p.answered + p.failed == p.planned
    # About 4 reads a meter (180 / 45): Poisson, so within a few percent over thousands of meters.
    assert abs(p.planned / p.targeted - 4.0) < 0.2
    assert op.state == OperationState.DONE
    # Only London's meters (CSP South), and reads change no hub.
    assert plain.state_hash() == f.state_hash()
    south = np.sum([a.messages[:, READ] - b.messages[:, READ] for a, b in zip(runs, base, strict=True)], axis=0)
    assert south[2] == sum(extra) and south[0] == south[1] == 0


def test_reads_to_hubs_out_of_reach_fail():
    f = quiet_fleet()
    f.submit({"type": "power_outage", "area": "London", "duration_min": 600})
    f.submit({"type": "csp_incident", "region": "South", "duration_min": 600})
    op = f.submit({"type": "on_demand_reads", "at": "1h", "duration_min": 120, "areas": ["London"]})
    f.run(8)
    p = op.progress()
    assert p.planned > 100 and p.answered == 0 and p.failed == p.planned


def test_a_campaign_is_the_same_for_one_and_three_shards():
    out = []
    for splits in (1, 3):
        f = LocalFleet(FleetConfig(hubs=20_000, seed=8, block_size=1024), splits=splits)
        op = f.submit({"type": "on_demand_reads", "duration_min": 300, "interval_min": 20, "share": 0.3,
                       "regions": ["North", "Central"]})
        s = f.run(14)
        out.append((f.state_hash(), json.dumps([x.to_dict() for x in s], sort_keys=True, default=str), op.progress()))
    assert out[0] == out[1]


def test_a_command_reads_back_from_its_journal_form():
    cfg = FleetConfig(hubs=2_000, seed=1)
    cmd = parse_command({"type": "on_demand_reads", "duration_min": 90, "areas": "North Wales, Merseyside and Cheshire",
                         "regions": "Central"}, cfg, now_tick=0)
    assert cmd == OnDemandReads(at=0, duration_min=90.0, regions=(1,), areas=(13,))
    assert AREA_BY_ID[13].name == "North Wales, Merseyside and Cheshire"
    assert command_from_dict(json.loads(json.dumps(cmd.to_dict()))) == cmd


@pytest.mark.parametrize(("fields", "name"), [
    ({}, "duration_min"), ({"duration_min": 0}, "duration_min"), ({"duration_min": "long"}, "duration_min"),
    ({"duration_min": 60, "interval_min": 0}, "interval_min"),
    ({"duration_min": 6000, "interval_min": 10}, "interval_min"),  # 600 reads a meter
    ({"duration_min": 60, "share": 2}, "share"), ({"duration_min": 60, "areas": ["Atlantis"]}, "areas"),
    ({"duration_min": 60, "areas": ["Lond\u00f6n"]}, "areas"), ({"duration_min": 60, "regions": ["East"]}, "regions"),
    ({"duration_min": 60, "every": 5}, "every"),
])
def test_bad_fields_are_refused_naming_the_field(fields, name):
    cfg = FleetConfig(hubs=2_000, seed=1)
    with pytest.raises(TwinInputError) as e:
        parse_command({"type": "on_demand_reads", **fields}, cfg, now_tick=0)
    assert e.value.field == name


@settings(max_examples=100, deadline=None)
@given(mean=st.floats(min_value=0.01, max_value=48.0))
def test_poisson_counts_invert_the_cdf(mean):
    u = (np.arange(20_000) + 0.5) / 20_000  # a uniform grid: the counts' quantiles
    k = poisson_counts(u, mean, 96)
    assert (np.diff(k) >= 0).all()  # monotone in u: one count per quantile
    assert abs(k.mean() - mean) < 0.02 + 0.01 * mean
