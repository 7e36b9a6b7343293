"""`twin bench reliability`: what faults cost. A firmware rollout on a 1M-hub fleet run fault-free
and again with a shard process SIGKILLed every few seconds (kills, restarts, recovery time p50/p99,
slowdown, identical final hash); checkpoint size, write and restore time per million hubs; the
history store's cost per tick; a rewind; and the whole-process resume time of a 30M-hub run. Each
part runs in a fresh process with its own local Ray; figures go to bench-results/reliability.json."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
           "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 5000}


def _dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def _run(config: Any, *, ticks: int, checkpoint_every: int, kill_every_s: float | None) -> dict[str, Any]:
    from twin.engine.chaos import ShardKiller
    from twin.engine.supervisor import FleetSupervisor

    d = Path(tempfile.mkdtemp(prefix="twin-bench-rel-"))
    sup = FleetSupervisor(config, shards=2, run_dir=d, checkpoint_every=checkpoint_every)
    try:
        op = sup.submit(dict(ROLLOUT))
        kills: list[dict[str, Any]] = []
        t = time.perf_counter()
        if kill_every_s:
            with ShardKiller(sup, every_s=kill_every_s) as killer:
                sup.run_until(ticks)
            kills = killer.kills
        else:
            sup.run_until(ticks)
        wall = time.perf_counter() - t
        out = {"wall_s": wall, "kills": len(kills), "kill_log": kills,
               "recoveries": list(sup.recoveries), "state_hash": sup.state_hash(),
               "hubs": sum(i["hubs"] for i in sup.info()), "operations": [v["name"] for v in sup.operations()],
               "progress": sup.operation(op["name"])["metadata"]["progress"].as_dict(),
               "history": {"ticks": sup.history_db.ticks_written, "seconds": sup.history_db.seconds,
                           "flushes": sup.history_db.flushes, "file_bytes": sup.history_db.bytes_on_disk()}}
        if not kill_every_s:
            out["checkpoint"] = _checkpoint_figures(sup, d)
            r = sup.rewind(ticks - 30)
            out["rewind"] = {"to_tick": r["tick"], "from_checkpoint": r["from_checkpoint"],
                             "replayed_ticks": r["replayed"], "seconds": r["seconds"]}
        return out
    finally:
        sup.shutdown()
        shutil.rmtree(d, ignore_errors=True)


def _checkpoint_figures(sup: Any, d: Path) -> dict[str, Any]:
    """Write one more checkpoint of every shard at once and time it, then restore it."""
    import ray

    target = d / "bench-ckpt"
    t = time.perf_counter()
    ray.get([s.checkpoint.remote(str(target / f"shard-{i:04d}.ckpt")) for i, s in enumerate(sup.shards)])
    write_s = time.perf_counter() - t
    size = _dir_bytes(target)
    c = sup.checkpoints.latest()
    t = time.perf_counter()
    assert all(ray.get([s.restore.remote(c) for s in sup.shards]))
    restore_s = time.perf_counter() - t
    return {"bytes": size, "write_s": write_s, "restore_s": restore_s}


def _kill_to_recovered(kills: list[dict[str, Any]], recoveries: list[dict[str, Any]]) -> list[float]:
    out = []
    for k in kills:
        after = [r["done_at"] for r in recoveries if r["shard"] == k["shard"] and r["done_at"] > k["wall"]]
        if after:
            out.append(min(after) - k["wall"])
    return out


def chaos(hubs: int, seed: int, ticks: int, kill_every_s: float) -> dict[str, Any]:
    from twin.engine.runtime import start_ray
    from twin.model.config import FleetConfig

    start_ray()
    config = FleetConfig(hubs=hubs, seed=seed)
    ref = _run(config, ticks=ticks, checkpoint_every=24, kill_every_s=None)
    hit = _run(config, ticks=ticks, checkpoint_every=24, kill_every_s=kill_every_s)
    # Recovery time as a user sees it: from the SIGKILL to the shard caught up and in step again
    # (Ray noticing the death, restarting the process, restoring, replaying); and the supervisor's
    # own part of it (from noticing to caught up).
    rec = np.array(_kill_to_recovered(hit["kill_log"], hit["recoveries"]) or [0.0])
    catch_up = np.array([r["seconds"] for r in hit["recoveries"]] or [0.0])
    per_m = hubs / 1e6
    h = ref["history"]
    return {
        "hubs": hubs, "ticks": ticks, "shards": 2, "checkpoint_every_ticks": 24, "kill_every_s": kill_every_s,
        "kills_injected": hit["kills"],
        "restarts": len(hit["recoveries"]),
        "recovery_s_p50": round(float(np.percentile(rec, 50)), 3),
        "recovery_s_p99": round(float(np.percentile(rec, 99)), 3),
        "recovery_s_max": round(float(rec.max()), 3),
        "catch_up_s_p50": round(float(np.percentile(catch_up, 50)), 3),
        "catch_up_s_p99": round(float(np.percentile(catch_up, 99)), 3),
        "replayed_ticks_mean": round(float(np.mean([r["replayed"] for r in hit["recoveries"]] or [0])), 1),
        "fault_free_wall_s": round(ref["wall_s"], 2),
        "chaos_wall_s": round(hit["wall_s"], 2),
        "slowdown": round(hit["wall_s"] / ref["wall_s"], 3),
        "final_hash_equal": hit["state_hash"] == ref["state_hash"],
        "hubs_lost": ref["hubs"] - hit["hubs"],
        "operations_fault_free": ref["operations"], "operations_chaos": hit["operations"],
        "rollout_progress_equal": hit["progress"] == ref["progress"],
        "activated": ref["progress"].get("activated"),
        "checkpoint_bytes_per_million_hubs": round(ref["checkpoint"]["bytes"] / per_m),
        "checkpoint_write_s_per_million_hubs": round(ref["checkpoint"]["write_s"] / per_m, 3),
        "checkpoint_restore_s_per_million_hubs": round(ref["checkpoint"]["restore_s"] / per_m, 3),
        "history_ms_per_tick": round(h["seconds"] / max(h["ticks"], 1) * 1000, 3),
        "history_flushes": h["flushes"],
        "history_file_bytes": h["file_bytes"],
        "fault_free_tick_ms": round(ref["wall_s"] / ticks * 1000, 2),
        "rewind": ref["rewind"],
    }


def resume(hubs: int, seed: int) -> dict[str, Any]:
    """A checkpoint of a big fleet, then the whole process gone and the run resumed from it."""
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor
    from twin.model.config import FleetConfig

    start_ray()
    config = FleetConfig(hubs=hubs, seed=seed)
    d = Path(tempfile.mkdtemp(prefix="twin-bench-resume-"))
    try:
        t = time.perf_counter()
        sup = FleetSupervisor(config, shards=2, run_dir=d, checkpoint_every=2)
        build_s = time.perf_counter() - t
        sup.submit(dict(ROLLOUT))
        t = time.perf_counter()
        sup.step(1)  # tick 0: a plain tick
        plain_s = time.perf_counter() - t
        t = time.perf_counter()
        sup.step(1)  # tick 1: a tick that writes a checkpoint of every shard
        ckpt_tick_s = time.perf_counter() - t
        before = sup.state_hash()
        sup.shutdown()  # the process is gone; the directory is all that is left
        size = _dir_bytes(d / "checkpoints")
        t = time.perf_counter()
        again = FleetSupervisor(config, shards=2, run_dir=d, checkpoint_every=None, resume=True)
        resume_s = time.perf_counter() - t
        try:
            same = again.state_hash() == before
            t = time.perf_counter()
            again.step(1)
            first_tick_s = time.perf_counter() - t
        finally:
            again.shutdown()
        per_m = hubs / 1e6
        return {"hubs": hubs, "shards": 2, "build_s": round(build_s, 2), "plain_tick_s": round(plain_s, 3),
                "checkpoint_tick_s": round(ckpt_tick_s, 3), "checkpoint_bytes": size,
                "checkpoint_bytes_per_million_hubs": round(size / per_m),
                "checkpoint_extra_s_per_million_hubs": round((ckpt_tick_s - plain_s) / per_m, 3),
                "resume_s": round(resume_s, 2), "resumed_at_tick": again.resumed_from,
                "resumed_state_identical": same, "first_tick_after_resume_s": round(first_tick_s, 3)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_reliability_bench(*, chaos_hubs: int, resume_hubs: int, ticks: int, kill_every_s: float, seed: int, out: Path,
                          console: Console) -> dict[str, Any] | None:
    from twin.bench.engine import child_json, write_results

    parts: dict[str, Any] = {}
    for name, argv in (("chaos", ["chaos", str(chaos_hubs), str(seed), str(ticks), str(kill_every_s)]),
                       ("resume", ["resume", str(resume_hubs), str(seed)])):
        console.print(f"reliability: {name} ({chaos_hubs if name == 'chaos' else resume_hubs:,} hubs)…", highlight=False)
        part = child_json(["twin.bench.reliability", *argv], name, console)
        if part is None:
            return None
        parts[name] = part
    return write_results(parts, out, console)


if __name__ == "__main__":
    if sys.argv[1] == "chaos":
        print(json.dumps(chaos(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))))
    else:
        print(json.dumps(resume(int(sys.argv[2]), int(sys.argv[3]))))
