"""The engine on a real local Ray: shard layout never changes results; queries route by hub id."""

from __future__ import annotations

import itertools

import pytest
import ray

from tests.integration.conftest import run_dir
from twin.engine.supervisor import FleetSupervisor, partition
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.state import HubState

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=30_000, seed=17, block_size=1024)
TICKS = 50  # over a day: every half-hour of the daily schedule once


@pytest.fixture(scope="module")
def reference():
    f = LocalFleet(CFG)
    return [s.to_dict() for s in f.run(TICKS)], f.state_hash(), f


@pytest.mark.parametrize("shards", [1, 2, 7])
def test_1_2_and_7_shards_match_the_in_process_fleet(shards, reference):
    summaries, state_hash, _ = reference
    sup = FleetSupervisor(CFG, shards=shards, run_dir=run_dir(shards))
    try:
        assert len(sup.shards) == shards
        got = [s.to_dict() for s in sup.step(TICKS)]
        assert got == summaries
        assert sup.state_hash() == state_hash
    finally:
        sup.shutdown()


def test_partition_is_contiguous_and_balanced():
    spans = partition(30, 7)
    assert spans[0].first_block == 0
    assert sum(s.n_blocks for s in spans) == 30
    assert all(a.first_block + a.n_blocks == b.first_block for a, b in itertools.pairwise(spans))
    assert max(s.n_blocks for s in spans) - min(s.n_blocks for s in spans) <= 1
    assert len(partition(3, 8)) == 3  # never an empty shard


def test_queries_route_to_the_owning_shard(reference):
    _, _, local = reference
    sup = FleetSupervisor(CFG, shards=3, run_dir=run_dir(3))
    try:
        sup.step(TICKS)
        from twin.model.query import hub_record

        for hub in (0, 1023, 1024, 15_000, CFG.hubs - 1):
            st = local.state_for(hub)
            expected = hub_record(st, CFG, local.network.up_by_area(TICKS - 1), hub, TICKS - 1)
            assert sup.hub(hub) == expected
        with pytest.raises(KeyError):
            sup.hub(CFG.hubs)
        with pytest.raises(KeyError):
            sup.hub(-1)
        rows = sup.aggregate(["region", "reachability"])
        assert sum(r["hubs"] for r in rows) == CFG.hubs
        last = sup.history[-1]
        reachable = sum(r["hubs"] for r in rows if r["reachability"] == "reachable")
        assert reachable == int(last.reachable_hubs.sum())
        with pytest.raises(ValueError):
            sup.aggregate(["nonsense"])
    finally:
        sup.shutdown()


def test_state_exports_and_imports_between_actors():
    sup = FleetSupervisor(CFG, shards=2, run_dir=run_dir(2))
    try:
        sup.step(10)
        h = sup.state_hash()
        data = ray.get(sup.shards[0].export_state.remote())
        assert HubState.from_bytes(data).n_hubs > 0
        sup.step(5)
        assert sup.state_hash() != h
        # Put shard 0 back to tick 9 and step it alone: it reaches the same rows as before.
        ray.get(sup.shards[0].import_state.remote(data))
        digests = ray.get(sup.shards[0].digests.remote())
        assert digests == HubState.from_bytes(data).block_digests()
    finally:
        sup.shutdown()
