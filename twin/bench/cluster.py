"""The same scenario on a 1-node and a 3-node Ray cluster on this machine (ray.cluster_utils):
the final state hash must match, and the difference in time is the cost of going multi-node.

    python -m twin.bench.cluster SCENARIO HUBS DAYS   # prints one JSON line
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_on(nodes: int, scenario: Path, hubs: int, days: float) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from twin.engine.supervisor import FleetSupervisor
    from twin.studies.scenario import load_scenario

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3 if nodes == 1 else 1,
                                                            "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        sc = load_scenario(scenario, hubs=hubs, days=days)
        sup = FleetSupervisor(sc.config, shards=3, run_dir=Path(tempfile.mkdtemp(prefix="twin-cluster-")))
        for cmd in sc.commands:
            sup.submit_command(cmd)
        t = time.perf_counter()
        sup.run_until(sc.ticks)
        wall = time.perf_counter() - t
        info = sup.info()
        out = {"nodes": nodes, "shard_nodes": len({i["node_id"] for i in info}), "ticks": sc.ticks,
               "wall_s": round(wall, 3), "hub_ticks_per_s": round(hubs * sc.ticks / wall),
               "state_hash": sup.state_hash()}
        sup.shutdown()
        return out
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    scenario_, hubs_, days_ = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    results = [run_on(n, scenario_, hubs_, days_) for n in (1, 3)]
    one, three = results
    print(json.dumps({"scenario": scenario_.name, "hubs": hubs_, "days": days_, "runs": results,
                      "multi_node_overhead": round(three["wall_s"] / one["wall_s"] - 1, 3)}))
