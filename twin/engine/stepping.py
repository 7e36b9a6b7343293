"""The step pipeline: the shard actors, and ticks planned, fanned out to every shard with a bounded
window in flight, gathered in order (a shard that died is restored and caught up), recorded and
checkpointed. A slow shard delays the fleet but never reorders it."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from twin.engine.controls_log import SPILL_NAME, ControlsLog
from twin.engine.errors import RunFailure, RunStateError
from twin.engine.operations import Controls, OperationsStore
from twin.engine.rundir import KEEP_CHECKPOINTS, RunDirectory
from twin.engine.shard import ShardActor
from twin.engine.timing import DurationHistogram
from twin.model.config import FleetConfig
from twin.model.fleet import fleet_hash
from twin.model.ops.commands import Command, FirmwareRollout
from twin.model.ops.rollout import fleet_census
from twin.model.ops.runtime import LAG
from twin.model.summary import TickSummary, finish, merge

if TYPE_CHECKING:
    from twin.engine.local_reads import LocalReads

TickListener = Callable[[TickSummary], None]
log = logging.getLogger("twin.engine.supervisor")  # the name operators' log filters already use


# A step whose shard is gone: its process died (RayActorError), the task failed in it, or its
# summary was in the object store of a node that died before the driver fetched it (a summary over
# Ray's inline limit is; ObjectLostError). In each case the shard's process is gone and Ray restarts
# it, so the step is recovered the same way.
SHARD_LOST = (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.ObjectLostError)


@dataclass(frozen=True)
class ShardSpan:
    first_block: int
    n_blocks: int


def partition(n_blocks: int, n_shards: int) -> list[ShardSpan]:
    """Split blocks into at most n_shards contiguous, balanced spans (none empty)."""
    n_shards = max(1, min(n_shards, n_blocks))
    cuts = [round(i * n_blocks / n_shards) for i in range(n_shards + 1)]
    return [ShardSpan(cuts[i], cuts[i + 1] - cuts[i]) for i in range(n_shards)]


def make_shards(config: FleetConfig, spans: list[ShardSpan], *, run_dir: Path,
                cpus_per_shard: float) -> list[Any]:
    """One ShardActor per span (Ray actor handles, in hub order). SPREAD: on a cluster the shards
    go to every node; the supervisor stays with the driver."""
    cfg = config.to_dict()
    actor: Any = ShardActor  # Ray's stubs type the decorated class as the plain one, without options()
    # No Ray task events: the GCS would keep one per step (up to Ray's cap of 100,000 tasks), so
    # its memory grew with the run's length; nothing here reads Ray's task state API.
    return [actor.options(num_cpus=cpus_per_shard, scheduling_strategy="SPREAD", enable_task_events=False).remote(
                cfg, s.first_block, s.n_blocks, run_dir=str(run_dir), index=i)
            for i, s in enumerate(spans)]


class StepPipeline:
    """Runs ticks on the shards.

    `tick_lock` (re-entrant) serialises everything that moves the fleet: steps, rewinds, attaching
    local reads, the state hash and shutdown; a tick's fleet decisions are taken under the
    operations store's lock, never the other way round (that lock is never held while this one is
    waited for)."""

    def __init__(self, config: FleetConfig, *, spans: list[ShardSpan], shards: list[Any], run: RunDirectory,
                 ops: OperationsStore, history: int) -> None:
        self.config = config
        self.spans = spans
        self._starts = [s.first_block for s in spans]
        self.shards = shards
        self.run = run
        self.ops = ops
        # Controls sent with each tick since checkpoint `base` (-1: the start of the run): what a
        # restarted shard needs to replay to reach the others exactly. Without checkpoints that is
        # every control since the start: the older ones go to a file (twin.engine.controls_log).
        self.controls_log = ControlsLog(spill=None if run.checkpoint_every else run.path / SPILL_NAME, keep=LAG)
        self.base = -1
        # The newest shard recoveries (for operators and benchmarks), not every one of a long run.
        self.recoveries: deque[dict[str, Any]] = deque(maxlen=1000)
        self.recovery_count = 0  # every recovery of the run so far (the deque keeps the newest)
        self.local_reads: LocalReads | None = None  # once enable_local_reads() is called
        # Fleet-level decisions for tick t are made from the summary of t - LAG, so at most LAG
        # ticks may be in flight.
        self.window = LAG
        self.tick = 0  # next tick to run
        self.history: deque[TickSummary] = deque(maxlen=history)
        self.totals: dict[str, Any] = {"messages": np.zeros_like(TickSummary(0).messages), "hh_lost": 0, "alerts": 0}
        self._listeners: list[TickListener] = []
        self.tick_lock = threading.RLock()
        # Seconds the driver spent marking checkpoints (planner snapshot, history flush, mark,
        # prune) and recording ticks (history, alert log, listeners): twin bench horizon.
        self.timing = {"checkpoint_mark_s": 0.0, "record_s": 0.0}
        # Each tick's wall seconds (twin.engine.timing), exported by the API's metrics.
        self.durations = DurationHistogram()

    # -- listeners -------------------------------------------------------------------------------
    def add_listener(self, fn: TickListener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: TickListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # -- stepping --------------------------------------------------------------------------------
    def step(self, n: int = 1) -> list[TickSummary]:
        """Run exactly n ticks now and return their summaries. Raises ValueError for a negative n,
        RunFailure (with the cause) if the run could not complete them."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self.tick_lock:
            try:
                return self._run_ticks(n)
            except Exception as e:
                log.exception("a step of %d tick(s) stopped at tick %d", n, self.tick)
                raise RunFailure(f"the run stopped at tick {self.tick}: {type(e).__name__}: {e}") from e

    def run_until(self, tick: int, progress: TickListener | None = None) -> list[TickSummary]:
        """Run as fast as possible until `tick` is the next tick to run."""
        out: list[TickSummary] = []
        with self.tick_lock:
            while self.tick < tick:
                chunk = self._run_ticks(min(tick - self.tick, 48), progress)
                out.extend(chunk)
        return out

    def _run_ticks(self, n: int, progress: TickListener | None = None) -> list[TickSummary]:
        first = self.tick
        pending: deque[tuple[int, float, list[ray.ObjectRef]]] = deque()
        out: list[TickSummary] = []
        next_submit = first
        # A tick's duration runs from when it was sent or the tick before it ended, whichever is
        # later, to its end (recorded, checkpointed): with ticks in flight together, what each
        # adds to the wall time.
        prev_end = 0.0
        while len(out) < n:
            while next_submit < first + n and len(pending) < self.window:
                if self.ops.blocks(next_submit):
                    # A journaled command for this tick is accepted only once the planner has
                    # observed the tick it was accepted after; wait for that summary.
                    if not pending:
                        raise RunStateError(f"the journal holds a command for tick {next_submit} accepted after it")
                    break
                controls = self.ops.controls_for(next_submit)
                self.controls_log.record(next_submit, controls)
                # One copy of the controls in the object store for all shards.
                controls_ref = ray.put(controls) if controls else None
                pending.append((next_submit, time.perf_counter(),
                                [self._submit_step(i, next_submit, controls_ref) for i in range(len(self.shards))]))
                next_submit += 1
            tick, sent, refs = pending.popleft()
            parts, recovered = self._gather(tick, refs)
            for i in recovered:
                # Its steps already in flight went to the dead process: send them again, in order.
                for t, _sent, later in pending:
                    later[i] = self._submit_step(i, t)
            summary = finish(merge(parts), self.config)
            if recovered:  # their records, newest last: the tick summary and its history row carry them
                summary.recoveries = list(self.recoveries)[-len(recovered):]
            self.ops.observe(summary)
            self.tick = tick + 1
            t_rec = time.perf_counter()
            self._record(summary)
            t_mark = time.perf_counter()
            self.timing["record_s"] += t_mark - t_rec
            if self.run.is_checkpoint_tick(tick):
                self._checkpoint(tick)
                self.timing["checkpoint_mark_s"] += time.perf_counter() - t_mark
            end = time.perf_counter()
            self.durations.observe(end - max(sent, prev_end))
            prev_end = end
            if progress:
                progress(summary)
            out.append(summary)
        return out

    def _checkpoint(self, tick: int) -> None:
        """The shards wrote their state with `tick`'s step; now the fleet half, then the mark."""
        later = self.controls_log.after(tick)
        self.run.write_planner_snapshot(tick, self.ops.snapshot(later))
        # Summaries up to the checkpoint are on disk before it counts: a resume from it
        # summarises only the ticks after it again.
        self.run.history_db.flush()
        checkpoints = self.run.checkpoints
        checkpoints.mark_complete(tick, len(self.shards), {"time": self.config.time_of(tick + 1).isoformat()})
        checkpoints.prune(keep=KEEP_CHECKPOINTS, now=tick + 1, every=self.run.checkpoint_every or 1)
        self.controls_log.cut(tick)
        self.base = tick

    def _submit_step(self, i: int, t: int, controls: Any = None) -> ray.ObjectRef:
        """Send tick t to shard i, with its logged controls (or `controls`, already in the store)."""
        ckpt = str(self.run.checkpoints.shard_path(t, i)) if self.run.is_checkpoint_tick(t) else None
        return self.shards[i].step.remote(t, controls if controls is not None else self.controls_log.get(t), ckpt)

    def _gather(self, tick: int, refs: list[ray.ObjectRef]) -> tuple[list[TickSummary], list[int]]:
        """The shards' summaries of `tick`; a shard that died is restored and brought up to date.
        Returns the summaries and the shards that had to be recovered."""
        try:
            return ray.get(refs), []
        except SHARD_LOST:
            pass
        out, recovered = [], []
        for i, ref in enumerate(refs):
            try:
                out.append(ray.get(ref))
            except SHARD_LOST:
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
                last, replayed, summary, node, back_s = self._catch_up(i, tick)
                break
            except ray.exceptions.RayActorError:
                continue
        else:
            raise RuntimeError(f"shard {i} kept dying while it caught up to tick {tick}")
        if self.local_reads is not None:
            self.local_reads.refresh(i)  # the restarted shard has a new shared segment
        took = time.perf_counter() - t0
        # seconds: from the step's failure reaching the driver to the shard caught up, of which
        # restart_s waiting for Ray to restart it and for it to restore its checkpoint (on a node's
        # death, Ray first has to notice the node is gone), and replay_s the ticks replayed.
        self.recoveries.append({"shard": i, "tick": tick, "from_tick": last, "replayed": replayed,
                                "attempts": _attempt + 1, "seconds": round(took, 3), "restart_s": round(back_s, 3),
                                "replay_s": round(took - back_s, 3), "done_at": time.monotonic(), "node_ip": node})
        self.recovery_count += 1
        return summary

    def _catch_up(self, i: int, tick: int) -> tuple[int, int, TickSummary, str, float]:
        shard = self.shards[i]
        t0 = time.perf_counter()
        info = None
        for _ in range(600):
            try:
                info = ray.get(shard.info.remote(), timeout=30)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.1)
        if info is None:
            raise RuntimeError(f"shard {i} did not come back")
        back_s = time.perf_counter() - t0
        last = info["tick"]
        if last != self.base:
            # Ray restarted it from the newest checkpoint on disk; the controls logged since
            # belong to `base` (after a rewind, or a checkpoint marked while it restarted).
            if not ray.get(shard.restore.remote(self.base)):
                raise RuntimeError(f"shard {i} cannot read checkpoint {self.base}")
            last = self.base
        for t, controls in self.controls_log.replay(last + 1, tick):
            ray.get(shard.step.remote(t, controls))
        return last, tick - 1 - last, ray.get(self._submit_step(i, tick)), str(info.get("node_ip", "")), back_s

    def _record(self, s: TickSummary) -> None:
        self.history.append(s)
        # Buffered first, written last: a batch that cannot be written (it stays buffered and the
        # error goes up to the clock) still leaves this tick counted and told to the listeners.
        due = self.run.history_db.add(s)
        # On disk before any listener hears of the tick: a subscriber reads the tick from the log.
        self.run.alert_log.append(s.tick, s.alert_events)
        self.totals["messages"] += s.messages
        self.totals["hh_lost"] += s.hh_lost
        self.totals["alerts"] += int(s.alerts.sum())
        s.totals = {"hh_lost": int(self.totals["hh_lost"]), "alerts": int(self.totals["alerts"]),
                    "messages": int(self.totals["messages"].sum())}
        for fn in list(self._listeners):
            fn(s)
        if due:
            self.run.history_db.flush()

    # -- going back ------------------------------------------------------------------------------
    def restore(self, checkpoint: int) -> bool:
        """Every shard to checkpoint `checkpoint` (-1: rebuilt from the seed); False unless all could."""
        return all(ray.get([s.restore.remote(checkpoint) for s in self.shards]))

    def restart_at(self, checkpoint: int, controls: Controls) -> None:
        """Under the operations lock, the shards restored: the next tick is the one after
        `checkpoint`, with the controls the planner had sent for the ticks after it."""
        self.controls_log.reset(controls)
        self.base = checkpoint
        self.tick = checkpoint + 1

    # -- the shards ------------------------------------------------------------------------------
    def shard_of(self, hub: int) -> int:
        """The index of the shard holding dense hub id `hub`; KeyError outside the fleet."""
        if not 0 <= hub < self.config.hubs:
            raise KeyError(hub)
        block = hub // self.config.block_size
        return bisect.bisect_right(self._starts, block) - 1

    def first_hubs(self) -> list[int]:
        """Each shard's first dense hub id, in shard order."""
        return [int(b) * self.config.block_size for b in self._starts]

    def census(self, cmd: Command) -> dict[str, int]:
        """{version: devices} a rollout's selector matches now, over every shard."""
        if not isinstance(cmd, FirmwareRollout):
            return {}  # only a rollout's validation reads a census
        # A rollout to named hubs (an SR 11.1) asks only the shards holding them: the others
        # would answer {}. The same merge as the in-process model's (LocalFleet.census).
        held = sorted({self.shard_of(h) for h in cmd.hubs}) if cmd.hubs else range(len(self.shards))
        return fleet_census(ray.get([self.shards[i].census.remote(cmd) for i in held]))

    def state_hash(self) -> str:
        with self.tick_lock:
            digests = ray.get([s.digests.remote() for s in self.shards])
        return fleet_hash([d for part in digests for d in part])

    def info(self) -> list[dict[str, Any]]:
        return ray.get([s.info.remote() for s in self.shards])

    def floor_pass(self) -> float:
        """Wall time of one plain pass over all state, all shards at once."""
        t = time.perf_counter()
        ray.get([s.floor_pass.remote() for s in self.shards])
        return time.perf_counter() - t

    def stop(self) -> None:
        """Detach local reads and kill the shard actors (after the clock has stopped)."""
        with self.tick_lock:
            if self.local_reads is not None:
                self.local_reads.close()
                self.local_reads = None
            for s in self.shards:
                ray.kill(s)
            self.shards = []
