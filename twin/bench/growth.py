"""`twin bench growth`: does anything grow with the length of a run? A small fleet runs as fast as
it can for simulated years under a steady stream of Service Requests (device changes, SR 11.1
with its SR 11.3 a day later, supplier switches, reads), through the engine's own front door (the
supervisor, with request ids in its ledger), and at intervals the bench samples the whole process
tree's RSS, the planner and its snapshot, the newest checkpoint, the history on disk, the stores
that could grow, and what a request costs. Each figure's slope per simulated year (least squares
over the samples after the first retention window) goes to a JSON results file: flat is ~0."""

from __future__ import annotations

import contextlib
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from twin.model.catalog import DeviceType, models_of
from twin.model.config import FleetConfig, TwinInputError
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.readings import READ_SRVS

SUPPLIERS = ("British Gas", "OVO Energy", "Octopus Energy", "E.ON Next")
# The figures whose slope is judged, and how to read them from a sample.
FIGURES = ("rss_bytes", "rss_driver_bytes", "rss_shards_bytes", "rss_ray_bytes",
           "planner_ops", "planner_live", "planner_snapshot_bytes", "checkpoint_bytes",
           "controls_log_ticks", "request_ledger_ids", "submit_ms_p50", "read_ms_p50")


def _tree_rss() -> dict[str, int]:
    """RSS of the whole process tree, and its parts: this driver, the shard actors, and Ray's own
    processes (GCS, raylet, agents, idle workers)."""
    me = psutil.Process()
    out = {"rss_bytes": 0, "rss_driver_bytes": 0, "rss_shards_bytes": 0, "rss_ray_bytes": 0}
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
            rss = p.memory_info().rss
            part = ("rss_driver_bytes" if p.pid == me.pid else
                    "rss_shards_bytes" if "ShardActor" in " ".join(p.cmdline()) else "rss_ray_bytes")
            out[part] += rss
            out["rss_bytes"] += rss
    return out


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _slope_per_year(days: list[float], values: list[float]) -> dict[str, float]:
    """Least-squares slope per simulated year, and that slope as a share of the mean."""
    x = np.asarray(days, float) / 365.0
    y = np.asarray(values, float)
    if x.size < 3 or np.ptp(x) == 0:
        return {"per_year": 0.0, "relative_per_year": 0.0}
    slope = float(np.polyfit(x, y, 1)[0])
    mean = float(np.mean(y))
    return {"per_year": round(slope, 3), "relative_per_year": round(slope / mean, 5) if mean else 0.0}


class _Stream:
    """The day's Service Requests, each with a request id claimed in the engine's ledger, as a
    DCC User's adapter sends them; counts what was accepted and refused, and times each call."""

    def __init__(self, sup: Any, rng: np.random.Generator) -> None:
        self.sup = sup
        self.rng = rng
        self.n = 0
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self.submit_ms: list[float] = []
        self.read_ms: list[float] = []
        self.held: list[str] = []  # SR 11.1 operations to activate (SR 11.3) the next day

    def _submit(self, event: dict[str, Any]) -> dict[str, Any] | None:
        from twin.engine.requests import RequestKey, request_digest

        self.n += 1
        rid = f"growth-{self.n}"
        key = RequestKey("growth-user", rid, request_digest(json.dumps(event, sort_keys=True, default=str)))
        self.sup.requests.claim(key.user, key.request_id, key.digest)
        t = time.perf_counter()
        try:
            view = self.sup.submit(event, request=key)
        except TwinInputError as e:
            self.sup.requests.fail(key.user, key.request_id)
            self.refused[type(e).__name__] = self.refused.get(type(e).__name__, 0) + 1
            return None
        finally:
            self.submit_ms.append((time.perf_counter() - t) * 1e3)
        self.accepted += 1
        return view

    def day(self, *, device_changes: int, firmware: int, switches: int, reads: int) -> None:
        from twin.services.dcc.errors import DccError
        from twin.services.dcc.requests import command_for

        hubs = self.sup.config.hubs
        for name in self.held:  # yesterday's SR 11.1s: the signed activation
            self._submit({"type": "operation_control", "operation": name, "action": "activate"})
        self.held = []
        for _ in range(device_changes):
            srv = str(self.rng.choice(["2.2", "8.14.1", "1.1.1"]))
            params = {"2.2": {"amount_pence": 500}, "1.1.1": {"unit_rate_pence": 24.5}}.get(srv, {})
            self._submit({"type": "service_request", "srv": srv, "hub": int(self.rng.integers(hubs)),
                          "user_id": "growth-user", "params": params})
        for _ in range(firmware):
            hub = int(self.rng.integers(hubs))
            rec = self.sup.hub(hub)
            esme = rec["meters"][0]
            code = next(i for i, m in enumerate(models_of(DeviceType.ESME), 1)
                        if (m.manufacturer, m.model) == (esme["manufacturer"], esme["model"]))
            # The newest version the model has: a premises already on it is refused (counted).
            target = self.sup.firmware_versions().versions(int(DeviceType.ESME), code)[-1]
            try:
                event = command_for("11.1", role="ES", party_id=1, user_id="growth-user", hub=hub, rec=rec,
                                    params={"target_version": target}, request_id=f"growth-fw-{self.n}")
            except DccError:  # a premises without the device: counted, as a refusal
                self.refused["no_device"] = self.refused.get("no_device", 0) + 1
                continue
            assert event is not None
            view = self._submit(event)
            if view is not None:
                self.held.append(view["name"].removeprefix("operations/"))
        for _ in range(switches):
            self._submit({"type": "supplier_switch", "hub": int(self.rng.integers(hubs)), "fuel": "electricity",
                          "to_supplier": str(self.rng.choice(SUPPLIERS))})
        for _ in range(reads):
            hub = int(self.rng.integers(hubs))
            t = time.perf_counter()
            with contextlib.suppress(ValueError):  # a fuel the premises lacks: still a request answered
                self.sup.read(hub, READ_SRVS[self.n % len(READ_SRVS)], "elec")
            self.read_ms.append((time.perf_counter() - t) * 1e3)
            self.n += 1

    def take_times(self) -> tuple[list[float], list[float]]:
        s, r = self.submit_ms, self.read_ms
        self.submit_ms, self.read_ms = [], []
        return s, r


def bench_growth(*, hubs: int = 100_000, years: float = 10.0, shards: int = 2, seed: int = 1,
                 sample_days: int = 30, device_changes_per_day: int = 20, firmware_per_day: int = 3,
                 switches_per_day: int = 5, reads_per_day: int = 20, checkpoint_every: int = 48,
                 run_dir: Path | None = None, progress: Any = None) -> dict[str, Any]:
    """Run `hubs` hubs for `years` simulated years at full speed with the daily stream of requests
    given, sampling every `sample_days` days; returns {"config", "samples", "slopes", "requests",
    "wall_s"}. Ray must be started. `progress(sample)` is called with each sample."""
    from twin.engine.supervisor import FleetSupervisor

    config = FleetConfig(hubs=hubs, seed=seed)
    where = run_dir or Path(tempfile.mkdtemp(prefix="twin-bench-growth-"))
    sup = FleetSupervisor(config, shards=shards, run_dir=where, checkpoint_every=checkpoint_every)
    stream = _Stream(sup, np.random.default_rng(seed))
    days = max(1, round(years * 365))
    samples: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for day in range(days):
            stream.day(device_changes=device_changes_per_day, firmware=firmware_per_day,
                       switches=switches_per_day, reads=reads_per_day)
            sup.run_until(sup.tick + HALF_HOURS_PER_DAY)
            if (day + 1) % sample_days == 0 or day + 1 == days:
                submit_ms, read_ms = stream.take_times()
                newest = sup.checkpoints.latest()
                planner = sup.planner
                s = {
                    "day": day + 1, "tick": sup.tick, "wall_s": round(time.perf_counter() - t0, 2),
                    **_tree_rss(),
                    "planner_ops": len(planner.ops), "planner_live": len(planner.live),
                    "planner_retired": planner.retired, "operations_accepted": planner.seq,
                    "planner_snapshot_bytes": len(sup.ops.snapshot({})),
                    "checkpoint_bytes": _dir_bytes(sup.checkpoints.tick_dir(newest)) if newest is not None else 0,
                    "checkpoints_bytes": _dir_bytes(where / "checkpoints"),
                    "history_bytes": sup.history_db.bytes_on_disk(),
                    "journal_bytes": sup.journal.path.stat().st_size,
                    "controls_log_ticks": len(sup.pipeline.controls_log),
                    "request_ledger_ids": len(sup.requests),
                    "submit_ms_p50": round(float(np.percentile(submit_ms, 50)), 3) if submit_ms else 0.0,
                    "submit_ms_p99": round(float(np.percentile(submit_ms, 99)), 3) if submit_ms else 0.0,
                    "read_ms_p50": round(float(np.percentile(read_ms, 50)), 3) if read_ms else 0.0,
                    "read_ms_p99": round(float(np.percentile(read_ms, 99)), 3) if read_ms else 0.0,
                }
                samples.append(s)
                if progress is not None:
                    progress(s)
    finally:
        wall = time.perf_counter() - t0
        sup.shutdown()
    # Judged after the first retention window (a week) and the first checkpoints: the warm-up.
    steady = [s for s in samples if s["day"] > 30] or samples
    slopes = {f: _slope_per_year([s["day"] for s in steady], [s[f] for s in steady]) for f in FIGURES}
    return {
        "config": {"hubs": hubs, "years": years, "days": days, "shards": shards, "seed": seed,
                   "checkpoint_every": checkpoint_every, "sample_days": sample_days,
                   "per_day": {"device_changes": device_changes_per_day, "sr_11_1": firmware_per_day,
                               "sr_11_3": firmware_per_day, "supplier_switches": switches_per_day,
                               "reads": reads_per_day}},
        "wall_s": round(wall, 1),
        "ticks_per_s": round(days * HALF_HOURS_PER_DAY / max(wall, 1e-9), 1),
        "requests": {"sent": stream.n, "accepted": stream.accepted, "refused": stream.refused},
        "samples": samples,
        "slopes": slopes,
    }


def run_growth_bench(*, hubs: int, years: float, seed: int, out: Path, console: Any) -> dict[str, Any]:
    """`twin bench growth`: start a local Ray, run bench_growth, write the results file."""
    from twin.bench.engine import write_results
    from twin.engine import runtime

    runtime.start_ray(num_cpus=2)

    def show(s: dict[str, Any]) -> None:
        console.print(f"day {s['day']:>5}  {s['wall_s']:>7.1f} s  RSS {s['rss_bytes'] / 2**20:,.0f} MiB  "
                      f"ops {s['planner_ops']:,} (of {s['operations_accepted']:,})  snapshot "
                      f"{s['planner_snapshot_bytes']:,} B  checkpoint {s['checkpoint_bytes'] / 2**20:,.1f} MiB  "
                      f"submit p50 {s['submit_ms_p50']} ms  read p50 {s['read_ms_p50']} ms", highlight=False)

    result = bench_growth(hubs=hubs, years=years, seed=seed, progress=show)
    result["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"] = {"python": platform.python_version(), "cores": psutil.cpu_count(),
                         "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}
    return write_results({"growth": result}, out, console)
