"""FleetSupervisor: creates the shard actors, owns the clock, fans ticks out and gathers summaries.

The supervisor holds handles and small metadata only; hub state lives in the shards. Ticks are
submitted to every shard with a bounded window in flight and gathered in order, so a slow shard
delays the fleet but never reorders it."""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from twin.engine.shard import ShardActor
from twin.model.config import FleetConfig
from twin.model.fleet import fleet_hash
from twin.model.network import NetworkPlan
from twin.model.params import TICK_SECONDS
from twin.model.query import label_counts, validate_group_keys
from twin.model.summary import TickSummary, finish, merge

TickListener = Callable[[TickSummary], None]


@dataclass(frozen=True)
class ShardSpan:
    first_block: int
    n_blocks: int


def partition(n_blocks: int, n_shards: int) -> list[ShardSpan]:
    """Split blocks into at most n_shards contiguous, balanced spans (none empty)."""
    n_shards = max(1, min(n_shards, n_blocks))
    cuts = [round(i * n_blocks / n_shards) for i in range(n_shards + 1)]
    return [ShardSpan(cuts[i], cuts[i + 1] - cuts[i]) for i in range(n_shards)]


class ClockState:
    PAUSED = "paused"
    RUNNING = "running"
    STOPPED = "stopped"


class FleetSupervisor:
    """The fleet on Ray. Create with a config; `step`, `run_until` and the clock advance it."""

    def __init__(self, config: FleetConfig, *, shards: int | None = None, history: int = 48 * 28,
                 window: int = 8):
        if not ray.is_initialized():
            raise RuntimeError("start Ray first (twin.engine.runtime.start_ray)")
        self.config = config
        if shards is None:
            shards = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.spans = partition(config.n_blocks, shards)
        self._starts = [s.first_block for s in self.spans]
        cpus = max(0.01, float(ray.cluster_resources().get("CPU", 1)) / len(self.spans))
        cfg = config.to_dict()
        t = time.perf_counter()
        self.shards = [
            ShardActor.options(num_cpus=min(1.0, cpus)).remote(cfg, s.first_block, s.n_blocks)
            for s in self.spans
        ]
        self.shard_info: list[dict[str, Any]] = ray.get([a.info.remote() for a in self.shards])
        self.build_s = time.perf_counter() - t
        self.network = NetworkPlan()
        self.window = window
        self.tick = 0  # next tick to run
        self.history: deque[TickSummary] = deque(maxlen=history)
        self.totals = {"messages": np.zeros_like(TickSummary(0).messages), "hh_lost": 0, "alerts": 0}
        self._listeners: list[TickListener] = []
        self._tick_lock = threading.RLock()
        self._cv = threading.Condition()
        self._clock = ClockState.PAUSED
        self._speed: float | None = 1800.0  # simulated seconds per wall second; None = flat out
        self._target: int | None = None
        self._thread: threading.Thread | None = None

    # -- stepping --------------------------------------------------------------------------
    def add_listener(self, fn: TickListener) -> None:
        self._listeners.append(fn)

    def step(self, n: int = 1) -> list[TickSummary]:
        """Run exactly n ticks now (whatever the clock is doing) and return their summaries."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._tick_lock:
            return self._run_ticks(n)

    def run_until(self, tick: int, progress: TickListener | None = None) -> list[TickSummary]:
        """Run as fast as possible until `tick` is the next tick to run."""
        out: list[TickSummary] = []
        with self._tick_lock:
            while self.tick < tick:
                chunk = self._run_ticks(min(tick - self.tick, 48), progress)
                out.extend(chunk)
        return out

    def _run_ticks(self, n: int, progress: TickListener | None = None) -> list[TickSummary]:
        first = self.tick
        pending: deque[tuple[int, list[ray.ObjectRef]]] = deque()
        out = []
        next_submit = first
        while len(out) < n:
            while next_submit < first + n and len(pending) < self.window:
                pending.append((next_submit, [s.step.remote(next_submit) for s in self.shards]))
                next_submit += 1
            tick, refs = pending.popleft()
            summary = finish(merge(ray.get(refs)), self.config)
            self.tick = tick + 1
            self._record(summary)
            if progress:
                progress(summary)
            out.append(summary)
        return out

    def _record(self, s: TickSummary) -> None:
        self.history.append(s)
        self.totals["messages"] += s.messages
        self.totals["hh_lost"] += s.hh_lost
        self.totals["alerts"] += int(s.alerts.sum())
        for fn in list(self._listeners):
            fn(s)

    # -- the clock ---------------------------------------------------------------------------
    def start_clock(self, *, speed: float | None = 1800.0, running: bool = True) -> None:
        """Start the background clock thread: `speed` simulated seconds per wall second."""
        self.set_speed(speed)
        if self._thread is None:
            self._thread = threading.Thread(target=self._clock_loop, name="twin-clock", daemon=True)
            self._thread.start()
        if running:
            self.resume()

    def pause(self) -> None:
        with self._cv:
            if self._clock != ClockState.STOPPED:
                self._clock = ClockState.PAUSED
            self._cv.notify_all()

    def resume(self) -> None:
        with self._cv:
            if self._clock != ClockState.STOPPED:
                self._clock = ClockState.RUNNING
            self._cv.notify_all()

    def set_speed(self, speed: float | None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError("speed must be a positive multiple of real time, or None for flat out")
        with self._cv:
            self._speed = speed
            self._cv.notify_all()

    def run_clock_until(self, tick: int) -> None:
        """Let the running clock stop by itself when `tick` is the next tick."""
        with self._cv:
            self._target = tick
            self._cv.notify_all()

    @property
    def clock_state(self) -> str:
        return self._clock

    @property
    def speed(self) -> float | None:
        return self._speed

    def _clock_loop(self) -> None:
        next_due = time.monotonic()
        while True:
            with self._cv:
                while self._clock == ClockState.PAUSED:
                    self._cv.wait()
                    next_due = time.monotonic()
                if self._clock == ClockState.STOPPED:
                    return
                if self._target is not None and self.tick >= self._target:
                    self._clock, self._target = ClockState.PAUSED, None
                    continue
                speed = self._speed
                if speed is not None:
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        self._cv.wait(timeout=delay)
                        continue
            self.step(1)
            if speed is not None:
                # Pace from the schedule, not from when the tick finished, so a tick's own
                # duration does not slow the clock (unless the fleet cannot keep up).
                next_due = max(next_due + TICK_SECONDS / speed, time.monotonic() - 1.0)

    # -- queries -------------------------------------------------------------------------------
    def shard_of(self, hub: int) -> int:
        if not 0 <= hub < self.config.hubs:
            raise KeyError(hub)
        block = hub // self.config.block_size
        return bisect.bisect_right(self._starts, block) - 1

    def hub(self, hub: int) -> dict[str, Any]:
        return ray.get(self.shards[self.shard_of(hub)].hub.remote(hub))

    def aggregate(self, by: list[str]) -> list[dict[str, Any]]:
        validate_group_keys(by)
        merged: dict[tuple[int, ...], list[int]] = {}
        for part in ray.get([s.aggregate.remote(by) for s in self.shards]):
            for k, (h, m) in part.items():
                acc = merged.setdefault(k, [0, 0])
                acc[0] += h
                acc[1] += m
        return label_counts(by, merged)

    def state_hash(self) -> str:
        with self._tick_lock:
            digests = ray.get([s.digests.remote() for s in self.shards])
        return fleet_hash([d for part in digests for d in part])

    def info(self) -> list[dict[str, Any]]:
        return ray.get([s.info.remote() for s in self.shards])

    def floor_pass(self) -> float:
        """Wall time of one plain pass over all state, all shards at once."""
        t = time.perf_counter()
        ray.get([s.floor_pass.remote() for s in self.shards])
        return time.perf_counter() - t

    def set_network(self, plan: NetworkPlan) -> None:
        with self._tick_lock:
            self.network = plan
            ray.get([s.set_network.remote(plan.to_array()) for s in self.shards])

    # -- shutdown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        with self._cv:
            self._clock = ClockState.STOPPED
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._tick_lock:
            for s in self.shards:
                ray.kill(s)
            self.shards = []
