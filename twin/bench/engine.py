"""`twin bench`: fleet build time, simulated-day time, the memory-bandwidth floor, bytes per hub
and whole-process peak RSS, at several fleet sizes. Each size runs in a fresh process (its own
local Ray) so peak memory belongs to that size alone; figures go to a JSON results file."""

from __future__ import annotations

import contextlib
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

from twin.launcher.process import LaunchError, wait_ready
from twin.model.params import HALF_HOURS_PER_DAY
from twin.util.background import ReportingThread


class TreeRssSampler:
    """Peak of the summed RSS of this process and all its descendants (Ray's GCS, raylet and
    workers are descendants of a locally started driver)."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = ReportingThread(self._run, name="rss-sampler")

    def sample(self) -> int:
        """The summed RSS now (also counted in the peak)."""
        now = self._sample()
        self.peak = max(self.peak, now)
        return now

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
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
        self._thread.join_or_raise()


def stop_process(proc: Any, timeout: float = 60.0) -> None:
    """Stop a `twin up` started by a benchmark as Ctrl-C would, killing it if it does not go."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


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


def bench_one(hubs: int, days: float, shards: int | None, seed: int, capacity: bool = True) -> dict[str, Any]:
    """One fleet size in this process; returns its figures. `capacity` False runs with the
    network capacity model off (params.capacity.enabled), to measure what it costs."""
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor
    from twin.model.config import FleetConfig

    ticks = round(days * HALF_HOURS_PER_DAY)
    with TreeRssSampler() as rss:
        start_ray()
        from twin.model.params import ModelParams

        config = FleetConfig(hubs=hubs, seed=seed, params=ModelParams.from_dict({"capacity": {"enabled": capacity}}))
        t = time.perf_counter()
        import tempfile

        sup = FleetSupervisor(config, shards=shards, run_dir=Path(tempfile.mkdtemp(prefix="twin-bench-")),
                              checkpoint_every=None)
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
        "capacity_model": capacity,
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
        "index_bytes_per_hub": round(sum(i["index_bytes"] for i in info) / hubs, 2),
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
        row = child_json(["twin.bench.engine", str(hubs), str(days), str(shards or 0), str(seed)], f"size {hubs:,}", console)
        if row is None:
            return None
        rows.append(row)
    host = machine()
    result: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": host, "seed": seed,
              "days": days, "sizes": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    t = Table(title=f"twin bench ({host['cores']} cores, {host['memory_gib']} GiB)",
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


def run_capacity_bench(sizes: list[int], *, days: float, seed: int, out: Path, console: Console
                       ) -> dict[str, Any] | None:
    """The capacity model's cost: one simulated day per size with the model on and off, each in a
    fresh process, and the ratio (the issue's budget: at most 1.3 at 30M hubs)."""
    rows = []
    for hubs in sizes:
        pair = {}
        for on in (False, True):
            console.print(f"benchmarking {hubs:,} hubs, capacity model {'on' if on else 'off'}…", highlight=False)
            row = child_json(["twin.bench.engine", str(hubs), str(days), "0", str(seed), "1" if on else "0"],
                             f"size {hubs:,}", console)
            if row is None:
                return None
            pair["on" if on else "off"] = row
        if pair["on"]["state_hash"] != pair["off"]["state_hash"]:
            console.print(f"[red]the capacity model changed the fleet's state at {hubs:,} hubs[/red]")
            return None
        rows.append({"hubs": hubs, "day_s_off": pair["off"]["day_s"], "day_s_on": pair["on"]["day_s"],
                     "ratio": round(pair["on"]["day_s"] / pair["off"]["day_s"], 3), "runs": pair})
    host = machine()
    result: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": host, "seed": seed,
                              "days": days, "sizes": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    t = Table(title=f"twin bench capacity ({host['cores']} cores, {host['memory_gib']} GiB)", title_justify="left")
    for col in ("hubs", "day s, model off", "day s, model on", "on / off"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['hubs']:,}", f"{r['day_s_off']:.2f}", f"{r['day_s_on']:.2f}", f"{r['ratio']:.2f}")
    console.print(t)
    console.print(f"results written to {out}")
    return result


def _median_tick_s(sup, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sup.step(1)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_events(hubs: int, seed: int) -> dict[str, Any]:
    """Event figures on one fleet: accepting a 10M-meter rollout, and what an event costs in the
    tick it starts, against a plain tick and one pass over all state."""
    import tempfile

    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor
    from twin.model.config import FleetConfig
    from twin.model.params import ModelParams

    start_ray()
    # Weight one ESME model so a single-model campaign reaches ~10M meters on a 30M fleet.
    params = ModelParams.from_dict({"shares": {"model_weights": {"EDMI ES-10A": 40.0}}})
    config = FleetConfig(hubs=hubs, seed=seed, params=params)
    sup = FleetSupervisor(config, run_dir=Path(tempfile.mkdtemp(prefix="twin-bench-events-")), checkpoint_every=None)
    out: dict[str, Any] = {"hubs": hubs, "shards": len(sup.shards)}
    try:
        sup.step(2)
        floor = min(sup.floor_pass() for _ in range(3))
        sup.step(4)
        plain = _median_tick_s(sup, 15)
        out["floor_pass_s"] = round(floor, 4)
        out["plain_tick_s"] = round(plain, 4)
        events = {
            "outage_1k_hubs": {"type": "power_outage", "area": "North Scotland", "duration_min": 60,
                               "fraction": 1000 / (hubs * 0.8 / 30.0)},
            "outage_area_800k_hubs": {"type": "power_outage", "area": "North Scotland", "duration_min": 60},
        }
        for name, ev in events.items():
            t = time.perf_counter()
            sup.submit(ev)
            accept = time.perf_counter() - t
            t = time.perf_counter()
            sup.step(1)  # the tick the event starts in
            start_tick = time.perf_counter() - t
            after = _median_tick_s(sup, 5)
            ops = sup.operations()
            out[name] = {"accept_s": round(accept, 4), "start_tick_s": round(start_tick, 4),
                         "extra_over_plain_tick_s": round(start_tick - plain, 4),
                         "extra_over_floor_pass": round((start_tick - plain) / floor, 2),
                         "following_tick_s": round(after, 4),
                         "touched": ops[-1]["metadata"]["progress"].result().get("premises_cut")}
            sup.step(4)
        ev = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
              "target_version": "5.3.0", "regions": ["Central", "South"], "concurrency_per_csp": 50_000}
        t = time.perf_counter()
        op = sup.submit(ev)
        accept = time.perf_counter() - t
        t = time.perf_counter()
        sup.step(1)
        materialise = time.perf_counter() - t
        running = _median_tick_s(sup, 8)
        progress = sup.operation(op["name"])["metadata"]["progress"]
        out["rollout"] = {"targeted_meters": progress.targeted, "accept_s": round(accept, 3),
                          "first_tick_s": round(materialise, 3), "running_tick_s": round(running, 4)}
    finally:
        sup.shutdown()
    return out


def run_events_bench(*, hubs: int, scenario_hubs: int, seed: int, out: Path, console: Console) -> dict[str, Any] | None:
    console.print(f"event costs on {hubs:,} hubs…", highlight=False)
    events = child_json(["twin.bench.engine", "events", str(hubs), str(seed)], "events bench", console)
    if events is None:
        return None
    scenarios = []
    import tempfile

    for path in sorted(Path("scenarios").glob("*.yaml")):
        console.print(f"scenario {path.name} on {scenario_hubs:,} hubs…", highlight=False)
        run_dir = Path(tempfile.mkdtemp(prefix="twin-bench-scenario-"))
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "twin.cli", "run", str(path), "--hubs", str(scenario_hubs),
                            "--run-dir", str(run_dir)], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            console.print(f"[red]{path.name} failed:[/red]\n{p.stderr[-3000:]}")
            return None
        rep = json.loads((run_dir / "report.json").read_text())
        scenarios.append({"scenario": path.name, "hubs": scenario_hubs, "days": rep["config"]["days"],
                          "wall_s_total": round(wall, 1), "simulate_s": rep["summary"]["wall_s"],
                          "operations": {o["name"]: o["metadata"]["state"] for o in rep["operations"]}})
    return write_results({"events": events, "scenarios": scenarios}, out, console)


def child_json(argv: list[str], label: str, console: Console) -> dict[str, Any] | None:
    """Run `python -m ARGV` (a benchmark part in a fresh process) and return the JSON it prints
    last; None, with its error output shown, if it failed. Ray may print its own notices (a
    killed worker) to stdout too, so the result is the last line that is a JSON object."""
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        console.print(f"[red]{label} failed:[/red]\n{proc.stderr[-4000:]}")
        return None
    return json.loads(next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")))


def start_twin_up(hubs: int, home: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """The README's main command as a benchmark's server, returned once its readiness file says it
    serves; `proc.ready` is what that file holds (API address, each API process's own port). Its
    messages go to HOME/twin-up.log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    home.mkdir(parents=True, exist_ok=True)
    ready_file = home / "twin-up-ready.json"
    ready_file.unlink(missing_ok=True)
    with (home / "twin-up.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "up", "--hubs", str(hubs), "--home", str(home),
                                 "--run-dir", str(run_dir), "--status-every", "3600", "--ready-file", str(ready_file),
                                 *extra], stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    try:
        # A 30M-hub fleet takes minutes to build on a busy machine; a failed start says so at once.
        proc.ready = wait_ready(proc, ready_file, timeout_s=3600, name="twin up")  # type: ignore[attr-defined]
    except LaunchError as e:
        stop_process(proc)
        raise RuntimeError(f"{e} (its messages: {home / 'twin-up.log'})") from None
    return proc


def write_results(figures: dict[str, Any], out: Path, console: Console, *, show: bool = True) -> dict[str, Any]:
    """Stamp figures with the time and machine, write them as JSON and (if `show`) print them."""
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), **figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if show:
        console.print_json(json.dumps(result))
        console.print(f"results written to {out}")
    return result


if __name__ == "__main__":
    if sys.argv[1] == "events":
        print(json.dumps(bench_events(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        hubs_, days_, shards_, seed_ = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        capacity_ = sys.argv[5] != "0" if len(sys.argv) > 5 else True
        print(json.dumps(bench_one(hubs_, days_, shards_ or None, seed_, capacity_)))
