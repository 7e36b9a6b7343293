"""`twin bench`: fleet build time, simulated-day time, the memory-bandwidth floor, bytes per hub
and whole-process peak RSS, at several fleet sizes. Each size runs in a fresh process (its own
local Ray) so peak memory belongs to that size alone; figures go to a JSON results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from twin.model.params import HALF_HOURS_PER_DAY


class TreeRssSampler:
    """Peak of the summed RSS of this process and all its descendants (Ray's GCS, raylet and
    workers are descendants of a locally started driver)."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, self._sample())
        self._stop.set()
        self._thread.join()


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ray

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ray": ray.__version__,
        "platform": platform.platform(),
    }


def bench_one(hubs: int, days: float, shards: int | None, seed: int) -> dict[str, Any]:
    """One fleet size in this process; returns its figures."""
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor
    from twin.model.config import FleetConfig

    ticks = round(days * HALF_HOURS_PER_DAY)
    with TreeRssSampler() as rss:
        start_ray()
        config = FleetConfig(hubs=hubs, seed=seed)
        t = time.perf_counter()
        import tempfile

        sup = FleetSupervisor(config, shards=shards, run_dir=Path(tempfile.mkdtemp(prefix="twin-bench-")))
        build_s = time.perf_counter() - t
        floors = [sup.floor_pass() for _ in range(3)]
        sup.step(1)  # warm-up tick, not timed
        t = time.perf_counter()
        sup.step(ticks)
        run_s = time.perf_counter() - t
        info = sup.info()
        state_hash = sup.state_hash()
        sup.shutdown()
    state_bytes = sum(i["state_bytes"] for i in info)
    day_s = run_s * HALF_HOURS_PER_DAY / ticks
    floor_s = min(floors)
    return {
        "hubs": hubs,
        "shards": len(info),
        "ticks": ticks,
        "build_s": round(build_s, 2),
        "day_s": round(day_s, 3),
        "tick_ms": round(run_s / ticks * 1000, 2),
        "hub_ticks_per_s": round(hubs * ticks / run_s),
        "floor_pass_s": round(floor_s, 4),
        "day_over_floor": round(day_s / floor_s, 1),
        "tick_over_floor": round(run_s / ticks / floor_s, 2),
        "state_bytes": state_bytes,
        "bytes_per_hub": round(state_bytes / hubs, 2),
        "shard_peak_rss_bytes": [i["peak_rss_bytes"] for i in info],
        "peak_rss_bytes": rss.peak,
        "peak_rss_per_hub": round(rss.peak / hubs, 1),
        "state_hash": state_hash,
    }


def run_bench(sizes: list[int], *, days: float, shards: int | None, seed: int, out: Path,
              console: Console) -> dict[str, Any] | None:
    rows = []
    for hubs in sizes:
        console.print(f"benchmarking {hubs:,} hubs…", highlight=False)
        cmd = [sys.executable, "-m", "twin.bench", str(hubs), str(days), str(shards or 0), str(seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            console.print(f"[red]size {hubs:,} failed:[/red]\n{proc.stderr[-4000:]}")
            return None
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "seed": seed,
              "days": days, "sizes": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    t = Table(title=f"twin bench ({result['machine']['cores']} cores, {result['machine']['memory_gib']} GiB)",
              title_justify="left")
    for col in ("hubs", "shards", "build s", "day s", "floor s", "day/floor", "B/hub", "peak RSS GiB",
                "hub-ticks/s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['hubs']:,}", str(r["shards"]), f"{r['build_s']:.1f}", f"{r['day_s']:.2f}",
                  f"{r['floor_pass_s']:.3f}", f"{r['day_over_floor']:.1f}", f"{r['bytes_per_hub']:.0f}",
                  f"{r['peak_rss_bytes'] / 2**30:.2f}", f"{r['hub_ticks_per_s'] / 1e6:,.0f}M")
    console.print(t)
    console.print(f"results written to {out}")
    return result


if __name__ == "__main__":
    hubs_, days_, shards_, seed_ = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(bench_one(hubs_, days_, shards_ or None, seed_)))
