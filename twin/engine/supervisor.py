"""FleetSupervisor: the fleet on Ray, as one object the services see through
`twin.engine.interface.FleetEngine`.

It composes the engine's parts and holds no logic of its own: the step pipeline and its shards
(`stepping`), the clock (`clock`), the operations store (`operations`), the run directory with
resume and rewind (`rundir`) and the queries (`queries`). The constructor reads the config and
calls named factories; resume is the same construction followed by a restore, so recovery is not
a second code path."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from twin.engine.alert_log import RETENTION_DAYS, AlertLog
from twin.engine.checkpoint import CheckpointStore
from twin.engine.clock import DEFAULT_SPEED, Clock, ClockFailureListener, ClockState
from twin.engine.errors import RunFailure, RunStateError
from twin.engine.history import HistoryStore
from twin.engine.journal import Journal
from twin.engine.latency import LatencyTable
from twin.engine.needs import DEFAULT_CHECKPOINT_EVERY
from twin.engine.operations import OperationFilter, OperationsStore
from twin.engine.placement import ClusterView, ShardLocator, cluster_view
from twin.engine.queries import FleetQueries
from twin.engine.recovery import RunRecovery
from twin.engine.requests import RequestKey, RequestLedger
from twin.engine.rundir import KEEP_CHECKPOINTS, RunDirectory, read_manifest, write_manifest
from twin.engine.stepping import ShardSpan, StepPipeline, TickListener, make_shards, partition
from twin.engine.timing import TickTimings
from twin.model.catalog import VersionTable
from twin.model.config import FleetConfig
from twin.model.network import NetworkPlan
from twin.model.ops.commands import Command
from twin.model.ops.progress import Progress
from twin.model.ops.runtime import OPERATION_RETENTION_DAYS, FleetPlanner
from twin.model.summary import TickSummary

if TYPE_CHECKING:
    from twin.engine.local_reads import LocalReads

# Importable from here as before the split (the CLI, the services, benchmarks and tests use them).
__all__ = ["KEEP_CHECKPOINTS", "ClockFailureListener", "ClockState", "FleetSupervisor", "RunFailure",
           "RunStateError", "ShardSpan", "TickListener", "partition", "read_manifest", "write_manifest"]


class FleetSupervisor:
    """The fleet on Ray. Create with a config; `step`, `run_until` and the clock advance it.

    Locks (each guards its part only; when two are held, in this order):
    - `pipeline.tick_lock` (re-entrant): the fleet moving (steps, rewind, state hash, shutdown);
    - `ops.lock` (the plan lock): the planner, the journal queue and the tick last sent;
    - the clock's condition: the clock's state, speed, target and thread."""

    def __init__(self, config: FleetConfig, *, run_dir: Path, shards: int | None = None, history: int = 48 * 28,
                 cpus_per_shard: float | None = None, checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
                 resume: bool = False,
                 alert_retention_days: float = RETENTION_DAYS,
                 operation_retention_days: float | None = OPERATION_RETENTION_DAYS):
        if not ray.is_initialized():
            raise RuntimeError("start Ray first (twin.engine.runtime.start_ray)")
        self.config = config
        if shards is None:
            shards = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if shards < 1:
            raise ValueError("shards must be at least 1")
        spans = partition(config.n_blocks, shards)
        if cpus_per_shard is None:
            cpus_per_shard = min(1.0, max(0.01, float(ray.cluster_resources().get("CPU", 1)) / len(spans)))
        t = time.perf_counter()
        actors = make_shards(config, spans, run_dir=run_dir, cpus_per_shard=cpus_per_shard)
        self.shard_info: list[dict[str, Any]] = ray.get([a.info.remote() for a in actors])
        self.build_s = time.perf_counter() - t
        self._locator = ShardLocator([int(i["hubs"]) for i in self.shard_info])  # cluster(): where shards run
        self.run = RunDirectory(run_dir, config=config, shards=len(spans), checkpoint_every=checkpoint_every,
                                alert_retention_days=alert_retention_days)
        self.ops = OperationsStore(config, journal=self.run.journal, census=self._census,
                                   refuses_commands=self._refuses_commands, retention_days=operation_retention_days)
        self.pipeline = StepPipeline(config, spans=spans, shards=actors, run=self.run, ops=self.ops, history=history)
        self.recovery = RunRecovery(self.run, self.pipeline, self.ops)
        self.queries = FleetQueries(config, pipeline=self.pipeline, ops=self.ops)
        self.wall_clock = Clock(step=self.step, tick=lambda: self.pipeline.tick)
        if resume:
            self.recovery.resume()
        elif self.run.journal.seq or any(i["tick"] != -1 for i in self.shard_info):
            self.shutdown()
            raise RunStateError(f"{run_dir} already holds a run: resume it or use a new directory")
        self.run.alert_log.reset(self.pipeline.tick)

    # The parts' callbacks: bound late, so the parts need not be built in a fixed order.
    def _census(self, cmd: Command) -> dict[str, int]:
        return self.pipeline.census(cmd)

    def _refuses_commands(self) -> str | None:
        return self.recovery.refuses_commands()

    # -- the parts' state, by the names the services and tools use ------------------------------
    @property
    def tick(self) -> int:
        """The next tick to run."""
        return self.pipeline.tick

    @property
    def head(self) -> int:
        """The furthest tick this run has reached (beyond `tick` after a rewind)."""
        return self.recovery.head

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def manifest(self) -> dict[str, Any]:
        return self.run.manifest

    @property
    def checkpoint_every(self) -> int | None:
        return self.run.checkpoint_every

    @property
    def checkpoints(self) -> CheckpointStore:
        return self.run.checkpoints

    @property
    def journal(self) -> Journal:
        return self.run.journal

    @property
    def history_db(self) -> HistoryStore:
        return self.run.history_db

    @property
    def alert_log(self) -> AlertLog:
        return self.run.alert_log

    @property
    def requests(self) -> RequestLedger:
        return self.ops.requests

    @property
    def planner(self) -> FleetPlanner:
        return self.ops.planner

    @property
    def spans(self) -> list[ShardSpan]:
        return self.pipeline.spans

    @property
    def shards(self) -> Sequence[Any]:
        return self.pipeline.shards

    @property
    def window(self) -> int:
        return self.pipeline.window

    @property
    def history(self) -> deque[TickSummary]:
        return self.pipeline.history

    @property
    def totals(self) -> dict[str, Any]:
        return self.pipeline.totals

    @property
    def recoveries(self) -> deque[dict[str, Any]]:
        return self.pipeline.recoveries

    @property
    def recovery_count(self) -> int:
        """Shard recoveries so far in this process (`recoveries` keeps the newest 1,000)."""
        return self.pipeline.recovery_count

    def shards_per_node(self) -> dict[str, int]:
        """How many shards run on each machine, by its IP address (asks every shard once)."""
        out: dict[str, int] = {}
        for info in self.pipeline.info():
            out[info["node_ip"]] = out.get(info["node_ip"], 0) + 1
        return dict(sorted(out.items()))

    def cluster(self, *, timeout_s: float = 1.0) -> ClusterView:
        """The Ray nodes (alive or dead), the shards on each and the newest recoveries
        (twin.engine.placement): no per-hub work, at most `timeout_s` waited for the shards, so
        safe while a node is dead (its shards show where they last answered, not responding)."""
        return cluster_view(self._locator, self.shards, self.pipeline.recoveries, self.pipeline.recovery_count,
                            timeout_s=timeout_s)

    @property
    def resumed_from(self) -> int | None:
        return self.recovery.resumed_from

    @property
    def local_reads(self) -> LocalReads | None:
        return self.pipeline.local_reads

    @property
    def _plan_lock(self) -> Any:  # the tests that hold it to show readers do not wait on the event loop
        return self.ops.lock

    @property
    def _next_submit(self) -> int:
        return self.ops.next_submit

    # -- stepping --------------------------------------------------------------------------------
    def add_listener(self, fn: TickListener) -> None:
        self.pipeline.add_listener(fn)

    def remove_listener(self, fn: TickListener) -> None:
        self.pipeline.remove_listener(fn)

    def step(self, n: int = 1) -> list[TickSummary]:
        """Run exactly n ticks now (whatever the clock is doing) and return their summaries."""
        return self.pipeline.step(n)

    def run_until(self, tick: int, progress: TickListener | None = None) -> list[TickSummary]:
        """Run as fast as possible until `tick` is the next tick to run."""
        return self.pipeline.run_until(tick, progress)

    def rewind(self, tick: int) -> dict[str, Any]:
        return self.recovery.rewind(tick)

    # -- the clock -------------------------------------------------------------------------------
    def start_clock(self, *, speed: float | None = DEFAULT_SPEED, running: bool = True) -> None:
        """Start the background clock thread: `speed` simulated seconds per wall second."""
        self.wall_clock.start(speed=speed, running=running)

    def add_failure_listener(self, fn: ClockFailureListener) -> None:
        self.wall_clock.add_failure_listener(fn)

    def remove_failure_listener(self, fn: ClockFailureListener) -> None:
        self.wall_clock.remove_failure_listener(fn)

    def pause(self) -> None:
        self.wall_clock.pause()

    def resume(self) -> None:
        self.wall_clock.resume()

    def set_speed(self, speed: float | None) -> None:
        self.wall_clock.set_speed(speed)

    def run_clock_until(self, tick: int) -> None:
        self.wall_clock.run_until(tick)

    @property
    def clock_state(self) -> ClockState:
        return self.wall_clock.state

    @property
    def clock_error(self) -> str | None:
        return self.wall_clock.error

    @property
    def speed(self) -> float | None:
        return self.wall_clock.speed

    def clock(self) -> dict[str, Any]:
        """{tick, time, state, speed, error}: the clock as the API shows it."""
        return {"tick": self.tick, "time": self.config.time_of(self.tick), "state": self.clock_state,
                "speed": self.speed, "error": self.clock_error}

    def tick_timings(self) -> TickTimings:
        """Every tick's wall seconds since this supervisor started (a histogram) and how far the
        running clock lags its schedule; cheap, from any thread."""
        cumulative, sum_s, count = self.pipeline.durations.snapshot()
        return TickTimings(bounds=self.pipeline.durations.bounds, cumulative=cumulative, sum_s=sum_s, count=count,
                           behind_ticks=self.wall_clock.behind(), slipped_s=self.wall_clock.slipped_s)

    # -- queries ---------------------------------------------------------------------------------
    def shard_of(self, hub: int) -> int:
        return self.pipeline.shard_of(hub)

    def hub(self, hub: int) -> dict[str, Any]:
        return self.queries.hub(hub)

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        return self.queries.read(hub, srv, fuel)

    def hub_events(self, hub: int, limit: int, *, start: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        return self.queries.hub_events(hub, limit, start=start)

    def list_hubs(self, filters: dict[str, Any], start: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        return self.queries.list_hubs(filters, start, limit)

    def aggregate(self, by: list[str]) -> list[dict[str, Any]]:
        return self.queries.aggregate(by)

    def schedule_view(self) -> tuple[int, np.ndarray, int, list[int]]:
        return self.queries.schedule_view()

    def network_view(self) -> NetworkPlan:
        return self.ops.network_view()

    def latency_table(self) -> LatencyTable | None:
        return self.ops.latency

    def firmware_versions(self) -> VersionTable:
        return self.ops.firmware_versions()

    def state_hash(self) -> str:
        return self.pipeline.state_hash()

    def info(self) -> list[dict[str, Any]]:
        return self.pipeline.info()

    def floor_pass(self) -> float:
        return self.pipeline.floor_pass()

    # -- operator events -------------------------------------------------------------------------
    def submit(self, event: dict[str, Any], *, relative_to: int | None = None,
               request: RequestKey | None = None) -> dict[str, Any]:
        return self.ops.submit(event, relative_to=relative_to, request=request)

    def submit_command(self, cmd: Command) -> dict[str, Any]:
        return self.ops.submit_command(cmd)

    def operations(self) -> list[dict[str, Any]]:
        return self.ops.operations()

    def operations_page(self, where: OperationFilter | None, start: int, limit: int
                        ) -> tuple[list[dict[str, Any]], int]:
        return self.ops.operations_page(where, start, limit)

    def operation(self, name: str) -> dict[str, Any]:
        return self.ops.operation(name)

    def operation_history(self, name: str) -> list[tuple[int, Progress]]:
        return self.ops.operation_history(name)

    # -- local reads and shutdown ----------------------------------------------------------------
    def enable_local_reads(self) -> LocalReads:
        """Serve hub lookups and reads from the shards' shared memory (for an API in this process);
        shards on other nodes are still asked over Ray."""
        from twin.engine.local_reads import LocalReads  # attaches shared memory: only when asked

        p = self.pipeline
        if p.local_reads is None:
            with p.tick_lock:
                p.local_reads = LocalReads(self)
        return p.local_reads

    def shutdown(self) -> None:
        self.wall_clock.stop()
        self.pipeline.stop()
        self.run.close()


if TYPE_CHECKING:
    from twin.engine.interface import FleetEngine

    # The type checker proves the supervisor is everything the services may use.
    _conforms: type[FleetEngine] = FleetSupervisor
