"""The cluster made visible, on a real local Ray: GetCluster names the one node and every shard on
it; a shard process killed mid-run shows up as a recovery in its tick's summary, the run's tick
history (every recovery found by SQL, with its duration), the engine's view and the API's."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import ray

from tests.integration.conftest import run_dir
from twin.engine.history import query
from twin.engine.supervisor import FleetSupervisor
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.config import FleetConfig
from twin.services.convert import summary_message

pytestmark = pytest.mark.usefixtures("ray_session")


def test_get_cluster_names_the_node_and_every_shard_on_it(live_api):
    infos = live_api.sup.info()
    with live_api.client("operator") as c:
        cluster = c.fleet.GetCluster(fleet_pb2.GetClusterRequest(), metadata=c.metadata, timeout=30)
    assert len(cluster.nodes) == 1
    n = cluster.nodes[0]
    assert n.alive and n.ip_address == ray.util.get_node_ip_address() and n.node_id == infos[0]["node_id"]
    assert n.cpu_count == ray.cluster_resources()["CPU"] and n.memory_bytes > 0
    # Each shard with its hubs and its process: the placement of the whole fleet, no hub visited.
    assert [(s.shard, s.hubs, s.pid) for s in n.shards] == [(i, d["hubs"], d["pid"]) for i, d in enumerate(infos)]
    assert sum(s.hubs for s in n.shards) == live_api.sup.config.hubs
    assert not cluster.unplaced_shards and cluster.recovery_count == len(cluster.recoveries) == 0


def _kill(sup: FleetSupervisor, shard: int) -> int:
    pid = int(ray.get(sup.shards[shard].info.remote())["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed shard process is still there"
        time.sleep(0.05)
    return pid


def test_a_recovery_is_recorded_in_its_tick_the_history_and_the_cluster_view():
    config = FleetConfig(hubs=8_192, seed=3, block_size=1024)
    sup = FleetSupervisor(config, shards=2, run_dir=run_dir("recorded"), checkpoint_every=4)
    try:
        sup.step(6)  # checkpoints after ticks 3 (and 7, later)
        old_pid = _kill(sup, 1)
        s = sup.step(1)[0]  # tick 6: shard 1 restored from checkpoint 3, ticks 4 and 5 replayed
        assert [(r["shard"], r["tick"], r["from_tick"], r["replayed"]) for r in s.recoveries] == [(1, 6, 3, 2)]
        seconds = s.recoveries[0]["seconds"]
        assert seconds > 0
        later = sup.step(2)
        assert [x.recoveries for x in later] == [[], []]
        # The API's tick summary carries it, with the checkpoint's simulated time.
        msg = summary_message(s, config.time_of(7), time_of=config.time_of)
        assert [(r.shard, r.checkpoint_tick, r.replayed_ticks) for r in msg.recoveries] == [(1, 3, 2)]
        assert msg.recoveries[0].checkpoint_time.ToDatetime().isoformat() == config.time_of(4).replace(tzinfo=None).isoformat()
        # Every recovery of the run and its duration, from the tick history by SQL.
        sup.history_db.flush()
        _, rows = query(sup.run_dir, "SELECT tick, recoveries, recovery_s, recovered_shards FROM ticks "
                                     "WHERE recoveries > 0 ORDER BY tick")
        assert rows == [(6, 1, seconds, "1")]
        _, rows = query(sup.run_dir, "SELECT count(*), sum(recoveries) FROM ticks")
        assert rows == [(9, 1)]
        # The engine's view: the shard back on the node under a new process, the recovery listed.
        view = sup.cluster(timeout_s=30)
        assert view.recovery_count == 1 and [r["shard"] for r in view.recoveries] == [1]
        assert len(view.nodes) == 1 and [p.index for p in view.nodes[0].shards] == [0, 1]
        assert all(p.responding for p in view.nodes[0].shards)
        assert view.nodes[0].shards[1].pid not in (0, old_pid)
    finally:
        sup.shutdown()


def test_a_shard_that_does_not_answer_never_holds_up_the_view():
    config = FleetConfig(hubs=4_096, seed=4, block_size=1024)
    sup = FleetSupervisor(config, shards=2, run_dir=run_dir("quiet"), checkpoint_every=4)
    try:
        first = sup.cluster(timeout_s=30)
        assert all(p.responding for p in first.nodes[0].shards)
        old_pid = _kill(sup, 0)
        t = time.perf_counter()
        view = sup.cluster(timeout_s=0.0)  # its call was just sent: the restarted process cannot have answered
        assert time.perf_counter() - t < 5.0
        # The dead shard stays where it last answered from, marked; the other is shown as ever.
        s0, s1 = view.nodes[0].shards
        assert (s0.index, s0.pid, s0.responding) == (0, old_pid, False) and s1.pid == first.nodes[0].shards[1].pid
        # Once Ray has restarted it, a later view finds its new process (a failed call is asked again).
        deadline = time.monotonic() + 60
        while not (s0 := sup.cluster(timeout_s=2.0).nodes[0].shards[0]).responding:
            assert time.monotonic() < deadline, "the restarted shard never answered"
        assert s0.pid not in (0, old_pid)
    finally:
        sup.shutdown()
