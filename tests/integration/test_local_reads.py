"""Hub lookups and reads from the shards' shared memory give exactly the shards' own answers, through
events, a rewind and a shard killed and restarted; a reader never returns a half-written row."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import ray

from tests.integration.conftest import run_dir
from twin.engine.shared_state import SharedColumns, SharedReader
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.readings import READ_SRVS

pytestmark = pytest.mark.usefixtures("ray_session")
EVENTS = [
    {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
     "target_version": "7.7.7", "concurrency_per_csp": 2000, "waves": [1.0]},
    {"type": "network_switch_off", "region": "Central", "technology": "3G", "at": "1h"},
    {"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 300, "at": "30m"},
]


def same_answers(sup: FleetSupervisor, hubs: np.ndarray) -> None:
    local = sup.local_reads
    for i in range(len(sup.shards)):
        mine = [int(h) for h in hubs if sup.shard_of(int(h)) == i]
        over_ray = ray.get(sup.shards[i].hubs.remote([(h,) for h in mine]))
        assert [local.hub(h) for h in mine] == over_ray
        for srv in [*sorted(READ_SRVS), "12.1"]:
            calls = [(h, srv, fuel, record) for h in mine[:40] for fuel in ("elec", "gas") for record in (False, True)]
            assert [local.service_facts(*c) for c in calls] == ray.get(sup.shards[i].service_facts_many.remote(calls))


def test_shared_memory_reads_equal_the_shards_answers():
    sup = FleetSupervisor(FleetConfig(hubs=30_000, seed=3, block_size=1024), shards=2, run_dir=run_dir("local"))
    try:
        local = sup.enable_local_reads()
        assert all(r is not None for r in local.readers)
        hubs = np.random.default_rng(1).choice(30_000, 400, replace=False)
        for e in EVENTS:
            sup.submit(dict(e))
        sup.step(8)
        recs = [local.hub(int(h)) for h in hubs]
        # The events show: a new firmware version, a switched-off network, a power cut.
        assert any(m["firmware"] == "7.7.7" for r in recs for m in r["meters"])
        assert any("network switched off" in r["dark_reasons"] for r in recs)
        assert any("power outage" in r["dark_reasons"] for r in recs)
        same_answers(sup, hubs)
        sup.rewind(3)
        same_answers(sup, hubs)
        assert local.hub(int(hubs[0]))["last_contact_tick"] <= 3
        sup.run_until(10)
        # A shard killed: Ray restarts it with a new segment, which the reader picks up.
        pid = ray.get(sup.shards[0].info.remote())["pid"]
        old = local.readers[0].descriptor.name
        os.kill(pid, signal.SIGKILL)
        sup.step(2)
        assert local.readers[0] is not None and local.readers[0].descriptor.name != old
        same_answers(sup, hubs)
    finally:
        sup.shutdown()


def test_a_reader_never_returns_a_half_written_row():
    state = generate(FleetConfig(hubs=4096, seed=2, block_size=1024), 0, 4)
    writer = SharedColumns(state, node_id="")
    reader = SharedReader(writer.descriptor())
    try:
        hub = 77
        row, tick = reader.row(hub)
        assert {k: int(v[0]) for k, v in row.cols.items()} == {k: int(v[hub]) for k, v in state.cols.items()}
        writer.begin()  # a tick in progress
        state.cols["supplier"][hub] = 9
        assert reader.row(hub, wait_s=0.02) is None
        writer.end(41)
        row, tick = reader.row(hub)
        assert int(row.cols["supplier"][0]) == 9 and tick == 41
        # The state's columns are the shared ones: a write in the shard is what the reader sees.
        state.cols["lost_days"][hub] = 5
        assert int(reader.row(hub)[0].cols["lost_days"][0]) == 5
    finally:
        reader.close()
        writer.close()
    assert isinstance(state.cols["supplier"], np.ndarray) and state.cols["supplier"][77] == 9


def test_no_segment_when_shared_memory_is_short(monkeypatch):
    import twin.engine.shared_state as shared_state

    state = generate(FleetConfig(hubs=2048, seed=2, block_size=1024), 0, 2)
    before = state.cols["supplier"]
    monkeypatch.setattr(shared_state, "_shm_free_bytes", lambda: 1 << 20)
    with pytest.raises(MemoryError, match="shared memory"):
        SharedColumns(state, node_id="")
    assert state.cols["supplier"] is before  # the shard keeps its own arrays


def test_segments_of_dead_runs_are_swept(tmp_path):
    import twin.engine.shared_state as shared_state

    dead, alive = "twin-999999999-0badc0ffee00", f"twin-{os.getpid()}-0badc0ffee00"
    for name in (dead, alive, "other-999999999"):
        (tmp_path / name).write_bytes(b"x")
    assert shared_state.sweep_stale(str(tmp_path)) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive, "other-999999999"])
