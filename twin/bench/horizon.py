"""`twin bench horizon`: how long a simulated year and decade take, and what they keep on disk.

Two runs, each in a fresh process, checkpoints (daily) and history on, as `twin run` has them:
- **time**: `hubs` (default 30M) for `days` (default 3) simulated days: wall seconds per
  simulated day with everything on, split into the shards' ticks, their checkpoint writes and the
  driver's recording and checkpoint marking; the memory floor (one plain pass over all state,
  measured in the same run) and the day's ratio to it; a year and a decade at that rate
  (projections, labelled so: the run itself is `days` long);
- **storage**: `storage_hubs` (default 1M) for a whole simulated year, checkpoints pruned as a
  run prunes them: the checkpoint bytes kept at the end, sampled along the way, and that figure
  per hub times `hubs` (checkpoint bytes grow with the hubs held: every column is per hub).
The figures go to a JSON results file and a table."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from twin.bench.engine import TreeRssSampler, child_json, write_results
from twin.model.params import HALF_HOURS_PER_DAY

DAYS_PER_YEAR = 365.25


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def horizon_run(hubs: int, days: float, seed: int, *, sample_every_days: float = 0) -> dict[str, Any]:
    """One run in this process (Ray started here); returns its figures."""
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor
    from twin.model.config import FleetConfig

    ticks = round(days * HALF_HOURS_PER_DAY)
    folder = Path(tempfile.mkdtemp(prefix="twin-horizon-"))
    samples: list[dict[str, Any]] = []
    try:
        with TreeRssSampler() as rss:
            start_ray()
            config = FleetConfig(hubs=hubs, seed=seed)
            t = time.perf_counter()
            sup = FleetSupervisor(config, shards=None, run_dir=folder, checkpoint_every=HALF_HOURS_PER_DAY)
            build_s = time.perf_counter() - t
            floor_s = min(sup.pipeline.floor_pass() for _ in range(3))
            chunk = round(sample_every_days * HALF_HOURS_PER_DAY) if sample_every_days else ticks
            t = time.perf_counter()
            while sup.pipeline.tick < ticks:
                sup.run_until(min(ticks, sup.pipeline.tick + chunk))
                samples.append({"day": round(sup.pipeline.tick / HALF_HOURS_PER_DAY, 2),
                                "wall_s": round(time.perf_counter() - t, 2),
                                "checkpoint_bytes": _dir_bytes(folder / "checkpoints"),
                                "checkpoints_kept": len(sup.run.checkpoints.marked_ticks()),
                                "tree_rss_bytes": rss.sample()})
            run_s = time.perf_counter() - t
            info = sup.pipeline.info()
            timing = dict(sup.pipeline.timing)
            state_hash = sup.state_hash()
            checkpoint_bytes = _dir_bytes(folder / "checkpoints")
            history_bytes = _dir_bytes(folder / "history")
            sup.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sim_days = ticks / HALF_HOURS_PER_DAY
    day_s = run_s / sim_days
    shard_ckpt_s = max(i["checkpoint_s"] for i in info)  # shards write in parallel: the slowest counts
    return {
        "hubs": hubs, "days": sim_days, "shards": len(info), "seed": seed,
        "build_s": round(build_s, 2),
        "run_s": round(run_s, 2),
        "day_s": round(day_s, 3),
        "day_split_s": {
            "shard_checkpoint_writes": round(shard_ckpt_s / sim_days, 3),
            "driver_checkpoint_marks": round(timing["checkpoint_mark_s"] / sim_days, 3),
            "driver_recording": round(timing["record_s"] / sim_days, 3),
        },
        "floor_pass_s": round(floor_s, 4),
        "day_over_floor": round(day_s / floor_s, 1),
        "year_projected_min": round(day_s * DAYS_PER_YEAR / 60, 1),
        "decade_projected_min": round(day_s * DAYS_PER_YEAR * 10 / 60, 1),
        "checkpoint_bytes": checkpoint_bytes,
        "checkpoints_written": info[0]["checkpoints_written"],
        "history_bytes": history_bytes,
        "state_bytes": sum(i["state_bytes"] for i in info),
        "peak_rss_bytes": rss.peak,
        "samples": samples,
        "state_hash": state_hash,
    }


def run_horizon_bench(*, hubs: int, days: float, storage_hubs: int, storage_days: float, seed: int, out: Path,
                      console: Console) -> dict[str, Any] | None:
    console.print(f"timing {days:g} simulated days of {hubs:,} hubs, checkpoints and history on…", highlight=False)
    timed = child_json(["twin.bench.horizon", str(hubs), str(days), str(seed), "0"], f"{hubs:,} hubs", console)
    if timed is None:
        return None
    console.print(f"keeping {storage_days:g} simulated days of {storage_hubs:,} hubs' checkpoints…", highlight=False)
    kept = child_json(["twin.bench.horizon", str(storage_hubs), str(storage_days), str(seed), "30"],
                      f"{storage_hubs:,} hubs", console)
    if kept is None:
        return None
    per_hub = kept["checkpoint_bytes"] / storage_hubs
    figures = {
        "time": timed,
        "storage": kept,
        "checkpoint_bytes_per_hub_year": round(per_hub, 2),
        "checkpoint_bytes_year_at_hubs": round(per_hub * hubs),
    }
    result = write_results(figures, out, console, show=False)
    t = Table(title="twin bench horizon", title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right")
    split = timed["day_split_s"]
    t.add_row(f"simulated day, {hubs:,} hubs (checkpoints, history on)", f"{timed['day_s']:.2f} s")
    t.add_row("  of which shards' checkpoint writes", f"{split['shard_checkpoint_writes']:.2f} s")
    t.add_row("  of which driver: recording / checkpoint marks",
              f"{split['driver_recording']:.2f} / {split['driver_checkpoint_marks']:.2f} s")
    t.add_row("memory floor (one pass over all state)", f"{timed['floor_pass_s']:.3f} s")
    t.add_row("day / floor", f"{timed['day_over_floor']:.1f}")
    t.add_row(f"a year at this rate (projected from {timed['days']:g} days)", f"{timed['year_projected_min']:.1f} min")
    t.add_row("a decade at this rate (projected)", f"{timed['decade_projected_min']:.1f} min")
    t.add_row(f"checkpoints kept after {kept['days']:g} days of {storage_hubs:,} hubs (run)",
              f"{kept['checkpoint_bytes'] / 2**20:,.0f} MiB in {kept['samples'][-1]['checkpoints_kept']} checkpoints")
    t.add_row(f"  the same per hub, at {hubs:,} hubs", f"{per_hub * hubs / 2**30:.2f} GiB")
    console.print(t)
    console.print(f"results written to {out}")
    return result


if __name__ == "__main__":
    hubs_, days_, seed_, every_ = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(horizon_run(hubs_, days_, seed_, sample_every_days=every_)))
