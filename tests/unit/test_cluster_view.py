"""The cluster made visible: the engine's view of nodes and shards (twin.engine.placement.build_view),
`twin up`'s node and cluster lines, and a recovery as the API gives it. Pure functions, no Ray."""

from __future__ import annotations

from datetime import UTC, datetime

from twin.engine.placement import ClusterView, ShardPlace, build_view
from twin.launcher.story import cluster_line, node_lines
from twin.model.config import FleetConfig
from twin.services.convert import cluster_message, recovery_message

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
GIB = 2**30


def node(node_id: str, ip: str, *, alive: bool = True, cpus: float = 8.0) -> dict[str, object]:
    """A record as ray.nodes() gives it (a dead node's resources are empty)."""
    return {"NodeID": node_id, "NodeManagerAddress": ip, "Alive": alive,
            "Resources": {"CPU": cpus, "memory": 16 * GIB} if alive else {}}


def place(i: int, node_id: str, ip: str, *, responding: bool = True) -> ShardPlace:
    return ShardPlace(index=i, hubs=1000 + i, pid=4000 + i, node_id=node_id, node_ip=ip, responding=responding)


HEAD, W1, W2 = ("aa", "10.0.0.1"), ("bb", "10.0.0.3"), ("cc", "10.0.0.4")
TWO = build_view([node(*HEAD), node(*W1)], [place(0, *HEAD), place(1, *W1), place(2, *W1)])


def test_shards_go_to_their_nodes_alive_first_and_unknown_ones_apart():
    v = build_view([node("bb", "10.0.0.3", alive=False), node(*HEAD)],
                   [place(2, "bb", "10.0.0.3", responding=False), place(0, *HEAD),
                    # A shard Ray reports on a node id it no longer lists: placed by IP on the alive node there.
                    place(1, "zz", "10.0.0.1"),
                    ShardPlace(index=3, hubs=7, pid=0, node_id="", node_ip="", responding=False)])
    assert [(n.ip, n.alive, [p.index for p in n.shards]) for n in v.nodes] == [
        ("10.0.0.1", True, [0, 1]), ("10.0.0.3", False, [2])]
    assert [p.index for p in v.unplaced] == [3]
    assert (v.nodes[0].cpus, v.nodes[0].memory_bytes, v.nodes[1].cpus) == (8.0, 16 * GIB, 0.0)
    assert v.shards_per_node() == {"10.0.0.1": 2, "10.0.0.3": 1}
    assert [n.ip for n in v.alive] == ["10.0.0.1"]


def test_a_node_that_dies_is_lost_with_its_shards_and_a_new_one_joins():
    lost = build_view([node(*HEAD), node(*W1, alive=False)],
                      [place(0, *HEAD), place(1, *W1, responding=False), place(2, *W1, responding=False)])
    assert node_lines(TWO, lost, AT) == ["2026-03-01 12:30  node 10.0.0.3 LOST: 2 shards restarting elsewhere"]
    # Ray stops listing it; a node that held nothing goes quietly but is still said.
    empty = build_view([node(*HEAD), node(*W1)], [place(0, *HEAD), place(1, *HEAD)])
    assert node_lines(empty, build_view([node(*HEAD)], [place(0, *HEAD), place(1, *HEAD)]), AT) == [
        "2026-03-01 12:30  node 10.0.0.3 LOST: it held no shards"]
    joined = build_view([node(*HEAD), node(*W1, alive=False), node(*W2, cpus=4.0)],
                        [place(0, *HEAD), place(1, *W2), place(2, *W2)])
    assert node_lines(lost, joined, AT) == ["2026-03-01 12:30  node 10.0.0.4 joined: 4 CPUs, 16.0 GiB"]
    assert node_lines(None, TWO, AT) == [] and node_lines(TWO, TWO, AT) == []


def test_the_cluster_line_says_nodes_alive_and_shards_per_node_only_on_a_cluster():
    assert cluster_line(TWO, AT) == "2026-03-01 12:30  cluster: 2 of 2 nodes alive; shards per node: 10.0.0.1 1, 10.0.0.3 2"
    lost = build_view([node(*HEAD), node(*W1, alive=False)],
                      [place(0, *HEAD), place(1, *W1, responding=False), place(2, *W1, responding=False)],
                      recovery_count=1)
    assert cluster_line(lost, AT) == ("2026-03-01 12:30  cluster: 1 of 2 nodes alive; shards per node: 10.0.0.1 1, "
                                      "10.0.0.3 2 (dead); 2 shards not answering; 1 recovery so far")
    one = build_view([node(*HEAD)], [place(0, *HEAD), place(1, *HEAD)])
    assert cluster_line(one, AT) is None  # a single machine: the status line says it all
    assert "tick" not in (cluster_line(lost, AT) or "")  # "tick" marks the periodic status lines


def test_a_recovery_as_the_api_gives_it():
    cfg = FleetConfig(hubs=2048, seed=1, block_size=1024)
    r = {"shard": 2, "tick": 30, "from_tick": 23, "replayed": 6, "attempts": 1, "seconds": 3.25, "done_at": 5.0,
         "node_ip": "10.0.0.4", "wall_time": 1_700_000_000.5}
    m = recovery_message(r, cfg.time_of)
    assert (m.shard, m.tick, m.checkpoint_tick, m.replayed_ticks, m.node_ip_address) == (2, 30, 23, 6, "10.0.0.4")
    assert m.duration.ToTimedelta().total_seconds() == 3.25
    assert m.time.ToDatetime(tzinfo=UTC) == cfg.time_of(31)
    assert m.checkpoint_time.ToDatetime(tzinfo=UTC) == cfg.time_of(24)
    assert m.complete_time.ToDatetime(tzinfo=UTC).timestamp() == 1_700_000_000.5
    seed = recovery_message({**r, "from_tick": -1}, cfg.time_of)
    assert not seed.HasField("checkpoint_time") and seed.checkpoint_tick == -1
    view = ClusterView(nodes=TWO.nodes, recoveries=({**r, "shard": 1}, r), recovery_count=9)
    msg = cluster_message(view, cfg.time_of)
    assert [rec.shard for rec in msg.recoveries] == [2, 1]  # newest first
    assert [(n.ip_address, [s.shard for s in n.shards]) for n in msg.nodes] == [("10.0.0.1", [0]), ("10.0.0.3", [1, 2])]
    assert msg.recovery_count == 9 and msg.nodes[1].shards[1].pid == 4002
