"""`twin bench nodes`: what the death of a whole worker node costs a cluster run (issue 15).

For each fleet size, on a cluster of three nodes on this machine (a head and two workers, each in
its own network namespace: twin.bench.nodes), the shipped storm-outage scenario runs twice on
three shards: once without a fault, once with every process of a worker node killed at a fixed
tick after the first checkpoint. Measured:

- recovery: from the kill to the run back at its head (the tick in flight at the kill finished:
  the pipeline waits on it until the dead node's shards are restarted elsewhere, restored from
  the checkpoint and caught up), split into Ray noticing and restarting the shard, and the shard
  restoring and replaying;
- slowdown: the run's wall time with the node death against without, less one;
- that both runs end in the same state hash (a recovery that changed the run would be a bug).

Ray's failure detection is at its defaults for every size (the GCS health-checks each raylet every
3 s and declares it dead after 5 misses): what a cluster with Ray's defaults sees. The smallest
size runs once more with detection tightened (TIGHT_DETECTION, set on every node), to show how
much of the recovery is waiting for Ray to declare the node dead.

    twin bench nodes [--sizes 1M,10M] [--days 3] [--out bench-results/node-death.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from twin.bench.nodes import NamespacedCluster, available

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "storm-outage.yaml"
SHARDS = 3
KILL_AFTER_CHECKPOINT = 24  # ticks after the first checkpoint: half a day to replay
# Ray's GCS health check of each raylet (src/ray/common/ray_config_def.h): every 3,000 ms by
# default, a node declared dead after 5 failures in a row. Set on the head (`ray start` reads them
# from its environment), these declare a dead node after about 3 s.
TIGHT_DETECTION = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3"}


def _scenario_path() -> Path:
    return ROOT / "scenarios" / SCENARIO  # the checkout's, as the other suites read them


def driver(hubs: int, days: float, seed: int, run_dir: Path, address: str) -> dict[str, Any]:
    """The run on the cluster (in the head's namespace): prints "tick N T" (T: CLOCK_MONOTONIC,
    the same clock in every process of this machine) as each tick ends, then the results."""
    from twin.engine import runtime
    from twin.engine.supervisor import FleetSupervisor
    from twin.studies.scenario import load_scenario

    runtime.start_ray(address=address)
    sc = load_scenario(_scenario_path(), hubs=hubs, seed=seed, days=days)
    t0 = time.perf_counter()
    sup = FleetSupervisor(sc.config, shards=SHARDS, run_dir=run_dir, operation_retention_days=None)
    build_s = time.perf_counter() - t0
    for cmd in sc.commands:
        sup.submit_command(cmd)
    ends: list[float] = []

    def on_tick(s: Any) -> None:
        ends.append(time.monotonic())
        print(f"tick {s.tick} {ends[-1]:.6f}", flush=True)

    t = time.perf_counter()
    sup.run_until(sc.ticks, progress=on_tick)
    wall = time.perf_counter() - t
    out = {"build_s": round(build_s, 3), "wall_s": round(wall, 3), "ticks": sc.ticks, "tick_ends": ends,
           "state_hash": sup.state_hash(), "recoveries": list(sup.recoveries),
           "shard_nodes": [i["node_ip"] for i in sup.info()], "checkpoint_every": sup.checkpoint_every}
    sup.shutdown()
    return out


def _drive(c: NamespacedCluster, hubs: int, days: float, seed: int, *, kill_at: int | None) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="twin-node-death-"))
    p = c.popen([sys.executable, "-m", "twin.bench.node_death", "driver", str(hubs), str(days), str(seed),
                 str(run_dir), c.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at: float | None = None
    lines = []
    assert p.stdout is not None and p.stderr is not None
    for line in p.stdout:
        lines.append(line)
        if kill_at is not None and killed_at is None and line.startswith(f"tick {kill_at} "):
            killed_at = time.monotonic()
            c.kill_node("w1")
    err = p.stderr.read()
    if p.wait() != 0:
        raise RuntimeError(f"the benchmark's run failed: {err[-3000:]}")
    # The results are the last JSON line (Ray may write a blank line of its own at exit).
    res = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    res["killed_at"] = killed_at
    return res


def measure(c: NamespacedCluster, hubs: int, days: float, seed: int) -> dict[str, Any]:
    clean = _drive(c, hubs, days, seed, kill_at=None)
    kill_at = clean["checkpoint_every"] - 1 + KILL_AFTER_CHECKPOINT
    if kill_at >= clean["ticks"] - 2:
        raise ValueError(f"--days: {days} is too short to kill a node after the first checkpoint")
    faulty = _drive(c, hubs, days, seed, kill_at=kill_at)
    k = faulty["killed_at"]
    recs = faulty["recoveries"]
    if not recs:
        raise RuntimeError("the node was killed but no shard was recovered: none ran on it")
    # The run is back at its head when the last of the dead node's shards has caught up (the
    # tick waiting on it then ends); CLOCK_MONOTONIC is one clock for every process here.
    back = max(r["done_at"] for r in recs)
    noticed = min(r["done_at"] - r["seconds"] for r in recs)
    return {
        "hubs": hubs, "days": days, "ticks": clean["ticks"], "shards": SHARDS, "killed_after_tick": kill_at,
        "fault_free_wall_s": clean["wall_s"], "with_node_death_wall_s": faulty["wall_s"],
        "slowdown": round(faulty["wall_s"] / clean["wall_s"] - 1, 3),
        "recovery_s": round(back - k, 3),
        "failure_seen_s": round(noticed - k, 3),
        "restart_and_restore_s": round(max(r["restart_s"] for r in recs), 3),
        "replay_s": round(max(r["replay_s"] for r in recs), 3),
        "shards_recovered": len(recs), "replayed_ticks": [r["replayed"] for r in recs],
        "recovered_on": [r["node_ip"] for r in recs],
        "shard_nodes_before": clean["shard_nodes"], "shard_nodes_after": faulty["shard_nodes"],
        "same_state_hash": clean["state_hash"] == faulty["state_hash"], "state_hash": faulty["state_hash"],
    }


def run_node_death_bench(sizes: list[int], *, days: float, seed: int, out: Path, console: Console) -> dict[str, Any]:
    why = available()
    if why is not None:
        raise RuntimeError(f"twin bench nodes: {why}")
    runs = []
    # Ray's defaults for every size, then the smallest with failure detection tightened (what an
    # operator can set on the head: a dead node is declared after about 3 s instead of 15 s).
    plans: list[tuple[int, dict[str, str]]] = [(hubs, {}) for hubs in sizes] + [(min(sizes), TIGHT_DETECTION)]
    for hubs, env in plans:
        with NamespacedCluster(workers=2, cpus=2, object_store_bytes=2 * 2**30, env=dict(env)) as c:
            c.start()
            r = measure(c, hubs, days, seed)
        r["ray_env"] = dict(env)
        runs.append(r)
        tuned = " (detection tightened: " + ", ".join(f"{k}={v}" for k, v in env.items()) + ")" if env else ""
        console.print(f"{hubs:>12,} hubs{tuned}: back at its head {r['recovery_s']:.1f} s after the node died (the "
                      f"failure reached the run after {r['failure_seen_s']:.1f} s; Ray restarted the shard and it "
                      f"restored its checkpoint in {r['restart_and_restore_s']:.1f} s; {max(r['replayed_ticks'])} "
                      f"ticks replayed in {r['replay_s']:.1f} s); the run took {r['slowdown']:+.0%} against "
                      f"fault-free; same final state: {r['same_state_hash']}", highlight=False)
    res = {"suite": "nodes", "scenario": SCENARIO, "nodes": 3, "cpus_per_node": 2, "runs": runs,
           "machine": "one machine, nodes in network namespaces (twin.bench.nodes)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    console.print(f"results: {out}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m twin.bench.node_death")
    ap.add_argument("role", choices=["driver"])
    ap.add_argument("hubs", type=int)
    ap.add_argument("days", type=float)
    ap.add_argument("seed", type=int)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("address")
    a = ap.parse_args()
    print(json.dumps(driver(a.hubs, a.days, a.seed, a.run_dir, a.address)), flush=True)
