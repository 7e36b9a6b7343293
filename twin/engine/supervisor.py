"""FleetSupervisor: creates the shard actors, owns the clock, fans ticks out and gathers summaries.

The supervisor holds handles and small metadata only; hub state lives in the shards. Ticks are
submitted to every shard with a bounded window in flight and gathered in order, so a slow shard
delays the fleet but never reorders it."""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import ray

from twin.engine.alert_log import RETENTION_DAYS, AlertLog
from twin.engine.checkpoint import CheckpointStore, load_planner, planner_snapshot, read_verified, save_planner
from twin.engine.history import HistoryStore
from twin.engine.journal import NOTHING_APPLIED, Journal, Position, ReplayQueue, position
from twin.engine.operations import operation_view
from twin.engine.requests import RequestKey, RequestLedger
from twin.engine.shard import ShardActor
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import fleet_hash
from twin.model.ops.commands import Command, FirmwareRollout, OperationControl, command_from_dict, parse_command
from twin.model.ops.rollout import fleet_census
from twin.model.ops.runtime import LAG, FleetPlanner
from twin.model.ops.validation import validate
from twin.model.params import TICK_SECONDS
from twin.model.query import label_counts, validate_group_keys
from twin.model.summary import TickSummary, finish, merge

TickListener = Callable[[TickSummary], None]
# Told when the clock fails (its error) and when it runs again after a failure (None).
ClockFailureListener = Callable[[str | None], None]
log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 4


class RunStateError(RuntimeError):
    """The run cannot do this now (for example accept a command while rewound behind its head)."""


class RunFailure(RuntimeError):
    """A step asked for could not be completed by the run itself (a shard call or the run
    directory failed: disk full, history folder gone). Not the caller's fault: the API answers
    UNAVAILABLE with the cause; the ticks before the failure stand, and the rows of the history
    that could not be written stay buffered for the next try."""


@dataclass(frozen=True)
class ShardSpan:
    first_block: int
    n_blocks: int


def partition(n_blocks: int, n_shards: int) -> list[ShardSpan]:
    """Split blocks into at most n_shards contiguous, balanced spans (none empty)."""
    n_shards = max(1, min(n_shards, n_blocks))
    cuts = [round(i * n_blocks / n_shards) for i in range(n_shards + 1)]
    return [ShardSpan(cuts[i], cuts[i + 1] - cuts[i]) for i in range(n_shards)]


def read_manifest(run_dir: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def write_manifest(run_dir: Path, config: FleetConfig, shards: int, **extra: Any) -> dict[str, Any]:
    """What a run is: config and seed, and the versions that produced it; a branch also names its
    parent and fork tick (kept when the run is resumed)."""
    import json
    import platform
    from datetime import UTC, datetime
    from importlib.metadata import version

    path = run_dir / "manifest.json"
    old = read_manifest(run_dir)
    manifest = {
        "name": run_dir.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in old.items() if k in ("name", "created_at", "parent")},
        "config": config.to_dict(),
        "shards": shards,
        "versions": {"twin": version("twin"), "ray": ray.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(path)
    return manifest


class ClockState:
    PAUSED = "paused"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"  # the clock's thread ended with an error (`FleetSupervisor.clock_error`)


class FleetSupervisor:
    """The fleet on Ray. Create with a config; `step`, `run_until` and the clock advance it."""

    def __init__(self, config: FleetConfig, *, run_dir: Path, shards: int | None = None, history: int = 48 * 28,
                 cpus_per_shard: float | None = None, checkpoint_every: int | None = 48, resume: bool = False,
                 alert_retention_days: float = RETENTION_DAYS):
        if not ray.is_initialized():
            raise RuntimeError("start Ray first (twin.engine.runtime.start_ray)")
        self.config = config
        if shards is None:
            shards = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.spans = partition(config.n_blocks, shards)
        self._starts = [s.first_block for s in self.spans]
        if cpus_per_shard is None:
            cpus_per_shard = min(1.0, max(0.01, float(ray.cluster_resources().get("CPU", 1)) / len(self.spans)))
        cfg = config.to_dict()
        t = time.perf_counter()
        # SPREAD: on a cluster the shards go to every node; the supervisor stays with the driver.
        self.shards = [
            ShardActor.options(num_cpus=cpus_per_shard, scheduling_strategy="SPREAD").remote(
                cfg, s.first_block, s.n_blocks, run_dir=str(run_dir), index=i)
            for i, s in enumerate(self.spans)
        ]
        self.shard_info: list[dict[str, Any]] = ray.get([a.info.remote() for a in self.shards])
        self.build_s = time.perf_counter() - t
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints = CheckpointStore(run_dir)
        self.checkpoint_every = checkpoint_every
        # Controls sent with each tick since checkpoint `_base` (-1: the start of the run): what a
        # restarted shard needs to replay to reach the others exactly.
        self._controls_log: dict[int, list] = {}
        self._base = -1
        self.recoveries: list[dict[str, Any]] = []
        self.local_reads: Any = None  # LocalReads, once enable_local_reads() is called
        self.journal = Journal(run_dir / "journal.jsonl")
        # Request ids of the API requests that made journaled commands (retries get the first
        # answer, across restarts too); reads and the like are added by the services.
        self.requests = RequestLedger()
        self.requests.load(self.journal.records())
        self.manifest = write_manifest(run_dir, config, len(self.spans), checkpoint_every=checkpoint_every)
        self.name: str = self.manifest["name"]
        self.planner = FleetPlanner(config)
        # Journal records not yet accepted (after a resume or rewind, or a branch's inherited
        # future), and the position of the newest one the planner has accepted.
        self._replay = ReplayQueue()
        self._last_applied: Position = NOTHING_APPLIED
        # The furthest tick reached before a rewind: until the run is back there its future is
        # the recorded one, so new commands are refused (fork a branch to change it).
        self._head = 0
        self.history_db = HistoryStore(run_dir, branch=self.name, config=config)
        # Every alert sent, by position, for the retention window (re-delivery to subscribers).
        self.alert_log = AlertLog(run_dir / "alerts", retention_days=alert_retention_days)
        # Fleet-level decisions for tick t are made from the summary of t - LAG, so at most LAG
        # ticks may be in flight.
        self.window = LAG
        self._plan_lock = threading.Lock()
        self._next_submit = 0  # next tick not yet sent to the shards
        self.tick = 0  # next tick to run
        self.resumed_from: int | None = None
        self.history: deque[TickSummary] = deque(maxlen=history)
        self.totals = {"messages": np.zeros_like(TickSummary(0).messages), "hh_lost": 0, "alerts": 0}
        self._listeners: list[TickListener] = []
        self._tick_lock = threading.RLock()
        self._cv = threading.Condition()
        self._clock = ClockState.PAUSED
        self._speed: float | None = 1800.0  # simulated seconds per wall second; None = flat out
        self._target: int | None = None
        self._thread: threading.Thread | None = None
        self._clock_error: str | None = None
        self._failure_listeners: list[ClockFailureListener] = []
        if resume:
            self._resume()
        elif self.journal.seq or any(i["tick"] != -1 for i in self.shard_info):
            self.shutdown()
            raise RunStateError(f"{run_dir} already holds a run: resume it or use a new directory")
        self.alert_log.reset(self.tick)

    # -- stepping --------------------------------------------------------------------------
    def add_listener(self, fn: TickListener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: TickListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def step(self, n: int = 1) -> list[TickSummary]:
        """Run exactly n ticks now (whatever the clock is doing) and return their summaries."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._tick_lock:
            try:
                return self._run_ticks(n)
            except Exception as e:
                log.exception("a step of %d tick(s) stopped at tick %d", n, self.tick)
                raise RunFailure(f"the run stopped at tick {self.tick}: {type(e).__name__}: {e}") from e

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
                if self._replay.blocks(next_submit):
                    # A journaled command for this tick is accepted only once the planner has
                    # observed the tick it was accepted after; wait for that summary.
                    if not pending:
                        raise RunStateError(f"the journal holds a command for tick {next_submit} accepted after it")
                    break
                with self._plan_lock:
                    controls = self.planner.controls_for(next_submit)
                    self._next_submit = next_submit + 1
                self._controls_log[next_submit] = controls
                # One copy of the controls in the object store for all shards.
                controls_ref = ray.put(controls) if controls else None
                pending.append((next_submit, [self._submit_step(i, next_submit, controls_ref)
                                              for i in range(len(self.shards))]))
                next_submit += 1
            tick, refs = pending.popleft()
            parts, recovered = self._gather(tick, refs)
            for i in recovered:
                # Its steps already in flight went to the dead process: send them again, in order.
                for t, later in pending:
                    later[i] = self._submit_step(i, t)
            summary = finish(merge(parts), self.config)
            with self._plan_lock:
                self.planner.observe(summary)
                for rec in self._replay.due(self.planner.observed):
                    self._apply(rec)
            self.tick = tick + 1
            self._record(summary)
            if self._checkpoint_tick(tick):
                with self._plan_lock:
                    # The fleet half of the run at the end of `tick`: the planner, the controls
                    # already sent for later ticks, and how much of the journal it has accepted.
                    snapshot = planner_snapshot(self.planner, self._last_applied,
                                                {t: c for t, c in self._controls_log.items() if t > tick})
                save_planner(self.checkpoints.planner_path(tick), snapshot)
                # Summaries up to the checkpoint are on disk before it counts: a resume from it
                # summarises only the ticks after it again.
                self.history_db.flush()
                self.checkpoints.mark_complete(tick, len(self.shards), {"time": self.config.time_of(tick + 1).isoformat()})
                self.checkpoints.prune(keep=KEEP_CHECKPOINTS, now=tick + 1, every=self.checkpoint_every or 1)
                self._controls_log = {t: c for t, c in self._controls_log.items() if t > tick}
                self._base = tick
            if progress:
                progress(summary)
            out.append(summary)
        return out

    def _resume(self) -> None:
        """Continue a run from its directory: shards restored from the newest complete checkpoint
        (each actor restores itself; they are brought to one tick if their files disagree), the
        planner from its snapshot, and every journaled command the snapshot had not accepted
        accepted again at its recorded point, so each applies exactly once."""
        ticks = {i["tick"] for i in ray.get([s.info.remote() for s in self.shards])}
        c = ticks.pop() if len(ticks) == 1 else self._restore_shards(min(ticks))
        if c >= 0 and read_verified(self.checkpoints.planner_path(c)) is None:
            c = self._restore_shards(c - 1)
        self._load_fleet_half(c)
        self.totals = self.history_db.totals(upto=c)
        self.resumed_from = c

    def _restore_shards(self, max_tick: int) -> int:
        """Every shard to the newest complete checkpoint at or before `max_tick` that all of them
        can read (with a readable planner snapshot), else to the start. Returns its tick (or -1)."""
        for c in self.checkpoints.marked_ticks():
            if c > max_tick or read_verified(self.checkpoints.planner_path(c)) is None:
                continue
            if all(ray.get([s.restore.remote(c) for s in self.shards])):
                return c
        ray.get([s.restore.remote(-1) for s in self.shards])
        return -1

    def _load_fleet_half(self, c: int) -> None:
        """The planner, controls and journal queue as they were at the end of checkpoint `c` (-1:
        the start of the run); the shards are already there."""
        if c >= 0:
            snap = load_planner(self.checkpoints.planner_path(c), self.config)
            if snap is None:
                raise RuntimeError(f"the planner file of checkpoint {c} no longer verifies")
            planner, applied, controls = snap
        else:
            planner, applied, controls = FleetPlanner(self.config), NOTHING_APPLIED, {}
        with self._plan_lock:
            self.planner = planner
            for t, cs in controls.items():
                self.planner.pending[t] = list(cs) + self.planner.pending.get(t, [])
            self._controls_log = {t: list(cs) for t, cs in controls.items()}
            self._base = c
            self._last_applied = applied
            self._replay.load(self.journal.records(), applied=applied)
            for rec in self._replay.due(self.planner.observed):
                self._apply(rec)
            self.tick = self._next_submit = c + 1

    def _apply(self, rec: dict[str, Any]) -> None:
        """Accept a journaled command (already validated when it was first accepted)."""
        self.planner.accept(command_from_dict(rec["command"]), seq=rec.get("op_seq"))
        self._last_applied = position(rec)

    # -- rewind --------------------------------------------------------------------------------
    def rewind(self, tick: int) -> dict[str, Any]:
        """Go back to `tick` (the next tick to run afterwards): every shard restores the nearest
        complete checkpoint before it (or rebuilds from the seed), the planner its snapshot, and
        the ticks up to `tick` are replayed with the journal. The journal is kept: running on
        replays the recorded future exactly; to change it, fork a branch."""
        if isinstance(tick, bool) or not isinstance(tick, int):
            raise TwinInputError("tick", f"expected a tick number, got {tick!r}")
        with self._tick_lock:
            if not 0 <= tick <= self.tick:
                raise TwinInputError("tick", f"must be between 0 and the current tick {self.tick}, got {tick}")
            t0 = time.perf_counter()
            self._head = max(self._head, self.tick)
            self.history_db.flush()
            c = self._restore_shards(tick - 1)
            self._load_fleet_half(c)
            self.history = deque((s for s in self.history if s.tick <= c), maxlen=self.history.maxlen)
            self.totals = self.history_db.totals(upto=c)
            self.run_until(tick)
            return {"tick": tick, "from_checkpoint": c, "replayed": tick - 1 - c,
                    "seconds": round(time.perf_counter() - t0, 3)}

    @property
    def head(self) -> int:
        """The furthest tick this run has reached (beyond `tick` after a rewind)."""
        return max(self._head, self.tick)

    def _checkpoint_tick(self, tick: int) -> bool:
        return bool(self.checkpoint_every) and (tick + 1) % self.checkpoint_every == 0

    def _submit_step(self, i: int, t: int, controls: Any = None) -> ray.ObjectRef:
        """Send tick t to shard i, with its logged controls (or `controls`, already in the store)."""
        ckpt = str(self.checkpoints.shard_path(t, i)) if self._checkpoint_tick(t) else None
        return self.shards[i].step.remote(t, controls if controls is not None else self._controls_log.get(t), ckpt)

    def _gather(self, tick: int, refs: list[ray.ObjectRef]) -> tuple[list[TickSummary], list[int]]:
        """The shards' summaries of `tick`; a shard that died is restored and brought up to date.
        Returns the summaries and the shards that had to be recovered."""
        try:
            return ray.get(refs), []
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
            pass
        out, recovered = [], []
        for i, ref in enumerate(refs):
            try:
                out.append(ray.get(ref))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
                out.append(self._recover(i, tick))
                recovered.append(i)
        return out, recovered

    def _recover(self, i: int, tick: int) -> TickSummary:
        """Shard i lost its work (its process died; Ray restarted it from the newest checkpoint):
        replay the ticks since with the controls they had, then run `tick`. A shard that dies
        again while it catches up is caught up again."""
        t0 = time.perf_counter()
        for _attempt in range(20):
            try:
                last, replayed, summary = self._catch_up(i, tick)
                break
            except ray.exceptions.RayActorError:
                continue
        else:
            raise RuntimeError(f"shard {i} kept dying while it caught up to tick {tick}")
        if self.local_reads is not None:
            self.local_reads.refresh(i)  # the restarted shard has a new shared segment
        self.recoveries.append({"shard": i, "tick": tick, "from_tick": last, "replayed": replayed,
                                "attempts": _attempt + 1, "seconds": round(time.perf_counter() - t0, 3),
                                "done_at": time.monotonic()})
        return summary

    def _catch_up(self, i: int, tick: int) -> tuple[int, int, TickSummary]:
        shard = self.shards[i]
        info = None
        for _ in range(600):
            try:
                info = ray.get(shard.info.remote(), timeout=30)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.1)
        if info is None:
            raise RuntimeError(f"shard {i} did not come back")
        last = info["tick"]
        if last != self._base:
            # Ray restarted it from the newest checkpoint on disk; the controls logged since
            # belong to `_base` (after a rewind, or a checkpoint marked while it restarted).
            if not ray.get(shard.restore.remote(self._base)):
                raise RuntimeError(f"shard {i} cannot read checkpoint {self._base}")
            last = self._base
        for t in range(last + 1, tick):
            ray.get(shard.step.remote(t, self._controls_log.get(t)))
        return last, tick - 1 - last, ray.get(self._submit_step(i, tick))

    def _record(self, s: TickSummary) -> None:
        self.history.append(s)
        # Buffered first, written last: a batch that cannot be written (it stays buffered and the
        # error goes up to the clock) still leaves this tick counted and told to the listeners.
        due = self.history_db.add(s)
        # On disk before any listener hears of the tick: a subscriber reads the tick from the log.
        self.alert_log.append(s.tick, s.alert_events)
        self.totals["messages"] += s.messages
        self.totals["hh_lost"] += s.hh_lost
        self.totals["alerts"] += int(s.alerts.sum())
        s.totals = {"hh_lost": int(self.totals["hh_lost"]), "alerts": int(self.totals["alerts"]),
                    "messages": int(self.totals["messages"].sum())}
        for fn in list(self._listeners):
            fn(s)
        if due:
            self.history_db.flush()

    # -- the clock ---------------------------------------------------------------------------
    def start_clock(self, *, speed: float | None = 1800.0, running: bool = True) -> None:
        """Start the background clock thread: `speed` simulated seconds per wall second."""
        self.set_speed(speed)
        with self._cv:
            if self._thread is None and self._clock not in (ClockState.STOPPED, ClockState.FAILED):
                self._start_clock_thread()
        if running:
            self.resume()

    def _start_clock_thread(self) -> None:
        """Under self._cv: the clock's thread (see _clock_loop)."""
        self._thread = threading.Thread(target=self._clock_loop, name="twin-clock", daemon=True)
        self._thread.start()

    def add_failure_listener(self, fn: ClockFailureListener) -> None:
        """`fn(error)` when the clock fails, `fn(None)` when it runs again; called on the clock's
        thread (or the resuming caller's), so it must be quick."""
        self._failure_listeners.append(fn)

    def remove_failure_listener(self, fn: ClockFailureListener) -> None:
        if fn in self._failure_listeners:
            self._failure_listeners.remove(fn)

    def pause(self) -> None:
        """Pause the clock (a failed clock stays failed: resume is what tries again)."""
        with self._cv:
            if self._clock not in (ClockState.STOPPED, ClockState.FAILED):
                self._clock = ClockState.PAUSED
            self._cv.notify_all()

    def resume(self) -> None:
        """Run the clock; after a failure this starts a new clock thread (the failed tick's
        history rows were kept, so the retry loses nothing)."""
        restarted = False
        with self._cv:
            if self._clock == ClockState.FAILED:
                self._clock_error = None
                self._start_clock_thread()
                restarted = True
            if self._clock != ClockState.STOPPED:
                self._clock = ClockState.RUNNING
            self._cv.notify_all()
        if restarted:
            log.warning("the clock was resumed after a failure, at tick %d", self.tick)
            self._tell_failure(None)

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
    def clock_error(self) -> str | None:
        """Why the clock failed ("ExceptionType: message"), while it is FAILED; else None."""
        return self._clock_error

    @property
    def speed(self) -> float | None:
        return self._speed

    def _clock_loop(self) -> None:
        """The clock's thread. Whatever ends it with an error (a shard call, the history, a tick
        listener) leaves the clock FAILED with the cause, logged with its traceback and told to
        the failure listeners (the API's health goes NOT_SERVING); never RUNNING while stopped."""
        try:
            self._clock_ticks()
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            log.exception("the clock stopped at tick %d: %s", self.tick, error)
            with self._cv:
                self._clock, self._clock_error, self._thread = ClockState.FAILED, error, None
                self._cv.notify_all()
            self._tell_failure(error)

    def _tell_failure(self, error: str | None) -> None:
        for fn in list(self._failure_listeners):
            try:
                fn(error)
            except Exception:
                log.exception("a clock failure listener failed")

    def _clock_ticks(self) -> None:
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

    async def hub_async(self, hub: int) -> dict[str, Any]:
        """hub() for asyncio callers: awaits the shard without holding a thread."""
        return await self.shards[self.shard_of(hub)].hub.remote(hub)

    def hub_events(self, hub: int, limit: int, *, start: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """The hub's alerts in the retained tick history, newest first, at most `limit`; from
        `start` = (tick, rank): that tick's alerts from its rank-th on, then older ticks' (None:
        from the newest). Each event has its tick, kind, second and rank (its place among the
        hub's alerts of its tick). Cost grows with the alerts held in the history (vectorised per
        tick), not with the fleet."""
        out: list[dict[str, Any]] = []
        for s in reversed(list(self.history)):
            if start is not None and s.tick > start[0]:
                continue
            ev = s.alert_events
            if not ev or ev["hub"].size == 0:
                continue
            hit = np.flatnonzero(ev["hub"] == hub)
            skip = start[1] if start is not None and s.tick == start[0] else 0
            for rank, i in enumerate(hit[np.argsort(-ev["sec"][hit], kind="stable")]):
                if rank < skip:
                    continue
                out.append({"tick": s.tick, "kind": int(ev["kind"][i]), "second": int(ev["sec"][i]), "rank": rank})
                if len(out) >= limit:
                    return out
        return out

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        return ray.get(self.shards[self.shard_of(hub)].read.remote(hub, srv, fuel))

    def list_hubs(self, filters: dict[str, Any], start: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """Hubs matching `filters` from hub id `start`, at most `limit`; and the next start (None
        at the end). Shards are asked in hub order, so pages are stable."""
        out: list[dict[str, Any]] = []
        start = max(start, 0)
        while start < self.config.hubs and len(out) < limit:
            i = self.shard_of(start)
            recs, nxt = ray.get(self.shards[i].list_hubs.remote(filters, start, limit - len(out)))
            out.extend(recs)
            span = self.spans[i]
            end = min((span.first_block + span.n_blocks) * self.config.block_size, self.config.hubs)
            start = nxt if len(out) >= limit else end
        return out, (start if start < self.config.hubs else None)

    def clock(self) -> dict[str, Any]:
        return {"tick": self.tick, "time": self.config.time_of(self.tick), "state": self.clock_state,
                "speed": self._speed, "error": self._clock_error}

    def aggregate(self, by: list[str]) -> list[dict[str, Any]]:
        validate_group_keys(by)
        merged: dict[tuple[int, ...], list[int]] = {}
        for part in ray.get([s.aggregate.remote(by) for s in self.shards]):
            for k, (h, m) in part.items():
                acc = merged.setdefault(k, [0, 0])
                acc[0] += h
                acc[1] += m
        return label_counts(by, merged, self.planner.versions)  # the versions rollouts added, too

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

    # -- operator events ------------------------------------------------------------------------
    def submit(self, event: dict[str, Any], *, relative_to: int | None = None,
               request: RequestKey | None = None) -> dict[str, Any]:
        """Validate an operator event, journal it durably, then acknowledge it as an Operation.

        Times are ticks, ISO times or offsets ('2h', '1d') from `relative_to` (default: now).
        Invalid events raise TwinInputError naming the field; nothing is journaled or changed.
        `request` (claimed in `self.requests` by the caller) is journaled with the command and
        marked done with its operation, so a retry of it gets that operation."""
        with self._plan_lock:
            now = self._next_submit
            cmd = parse_command(event, self.config, now_tick=now, relative_to=relative_to)
            return self._accept(cmd, request=request)

    def submit_command(self, cmd: Command) -> dict[str, Any]:
        """Accept an already-parsed command (a scenario's), checking it is not in the past."""
        with self._plan_lock:
            if cmd.at < self._next_submit:
                raise TwinInputError("at", f"tick {cmd.at} is in the past (the fleet is at tick {self._next_submit})")
            return self._accept(cmd)

    def _accept(self, cmd: Command, *, request: RequestKey | None = None) -> dict[str, Any]:
        if self.tick < self._head:
            raise RunStateError(f"the run is rewound to tick {self.tick}, behind its head at tick {self._head}: "
                                "its future is the recorded one until it gets there; fork a branch to change it")
        validate(cmd, self.planner, census=self._census)
        # A new operation never takes a number a journaled, not yet accepted command will use.
        op_seq = None if isinstance(cmd, OperationControl) else max(self.planner.seq, self.journal.max_op_seq) + 1
        # The operation's name as the planner gives it (FleetPlanner.accept), journaled with the request.
        op_name = cmd.operation if isinstance(cmd, OperationControl) else f"{cmd.kind.replace('_', '-')}-{op_seq}"
        seq = self.journal.append(cmd, after_tick=self.planner.observed, op_seq=op_seq,
                                  request=request.journal_entry(op_name) if request is not None else None)
        op = self.planner.accept(cmd, seq=op_seq)
        self._last_applied = (self.planner.observed, seq)
        if request is not None:
            self.requests.finish(request.user, request.request_id, operation=op_name)
        return operation_view(op, self.config) if op is not None else {}

    def _census(self, cmd: Command) -> dict[str, int]:
        """{version: devices} a rollout's selector matches now, over every shard."""
        if not isinstance(cmd, FirmwareRollout):
            return {}
        return fleet_census(ray.get([s.census.remote(cmd) for s in self.shards]))

    def operations(self) -> list[dict[str, Any]]:
        with self._plan_lock:
            return [operation_view(op, self.config) for op in self.planner.ops.values()]

    def schedule_view(self) -> tuple[int, Any, int, list[int]]:
        """For API replicas: the last completed tick, the network schedule (NetworkPlan.to_array())
        and the tick before which it is final (a command accepted later applies then or after),
        and each shard's first hub; read together under the plan lock."""
        with self._plan_lock:
            return (self.tick - 1, self.planner.network.to_array(), self._next_submit,
                    [int(b) * self.config.block_size for b in self._starts])

    def operations_page(self, keep: Callable[[Any], bool] | None, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Views of up to `limit` operations `keep` accepts (all if None), from the `start`-th
        operation accepted; and the position of the next one it accepts (0 at the end). Positions
        count every operation, so one that changes state between pages (and now passes or fails
        `keep`) moves no other from one page to another. Only the page's views are built: a run
        can hold an operation per device-changing Service Request ever accepted."""
        with self._plan_lock:
            page, nxt = [], 0
            for i, op in enumerate(itertools.islice(self.planner.ops.values(), start, None), start):
                if keep is None or keep(op):
                    if len(page) == limit:
                        nxt = i
                        break
                    page.append(op)
            return [operation_view(op, self.config) for op in page], nxt

    def operation(self, name: str) -> dict[str, Any]:
        key = name.removeprefix("operations/")
        with self._plan_lock:
            op = self.planner.ops.get(key)
            if op is None:
                raise TwinInputError("name", f"no operation named {name!r}")
            return operation_view(op, self.config)

    def operation_history(self, name: str) -> list[tuple[int, dict[str, int]]]:
        with self._plan_lock:
            return list(self.planner.ops[name.removeprefix("operations/")].history)

    # -- shutdown --------------------------------------------------------------------------------
    def enable_local_reads(self) -> Any:
        """Serve hub lookups and reads from the shards' shared memory (for an API in this process);
        shards on other nodes are still asked over Ray."""
        from twin.engine.local_reads import LocalReads

        if self.local_reads is None:
            with self._tick_lock:
                self.local_reads = LocalReads(self)
        return self.local_reads

    def shutdown(self) -> None:
        with self._cv:
            self._clock = ClockState.STOPPED
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        with self._tick_lock:
            if self.local_reads is not None:
                self.local_reads.close()
                self.local_reads = None
            for s in self.shards:
                ray.kill(s)
            self.shards = []
        self.journal.close()
        try:
            self.history_db.close()
        except (OSError, duckdb.Error):
            # Said, not hidden: the summaries after the newest checkpoint are summarised again
            # (and written) when the run is resumed, so the history still ends up whole.
            log.exception("the last %d tick summaries of %s could not be written; resuming the run writes "
                          "them again", self.history_db.pending_ticks, self.run_dir)
