"""Going back to a checkpoint of the run directory (twin.engine.rundir): resuming a run from it and
rewinding a run to an earlier tick, restoring the step pipeline's shards and the planner and
replaying the journal."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from twin.engine.operations import OperationsStore
from twin.engine.rundir import RunDirectory
from twin.engine.stepping import StepPipeline
from twin.model.config import TwinInputError

log = logging.getLogger("twin.engine.supervisor")  # the name operators' log filters already use


class RunRecovery:
    """Going back to a checkpoint: resume (a run continued from its directory) and rewind (a run
    sent back to an earlier tick). Both restore the shards and the planner to one checkpoint and
    replay the journal, so every command applies exactly once at its recorded point.

    `head` (the furthest tick reached before a rewind) is changed only under the pipeline's tick
    lock; while the run is behind it, new commands are refused (`refuses_commands`)."""

    def __init__(self, run: RunDirectory, pipeline: StepPipeline, ops: OperationsStore) -> None:
        self.run = run
        self.pipeline = pipeline
        self.ops = ops
        self._head = 0
        self.resumed_from: int | None = None

    @property
    def head(self) -> int:
        """The furthest tick this run has reached (beyond `tick` after a rewind)."""
        return max(self._head, self.pipeline.tick)

    def refuses_commands(self) -> str | None:
        """Why no new command may be accepted now (None: they may)."""
        tick = self.pipeline.tick
        if tick < self._head:
            return (f"the run is rewound to tick {tick}, behind its head at tick {self._head}: its future "
                    "is the recorded one until it gets there; fork a branch to change it")
        return None

    def resume(self) -> None:
        """Continue a run from its directory: shards restored from the newest complete checkpoint
        (each actor restores itself; they are brought to one tick if their files disagree), the
        planner from its snapshot, and every journaled command the snapshot had not accepted
        accepted again at its recorded point, so each applies exactly once."""
        ticks = {i["tick"] for i in self.pipeline.info()}
        c = ticks.pop() if len(ticks) == 1 else self.restore_shards(min(ticks))
        if c >= 0 and self.run.planner_snapshot(c) is None:
            c = self.restore_shards(c - 1)
        self._load_fleet_half(c)
        self.pipeline.totals = self.run.history_db.totals(upto=c)
        self.resumed_from = c

    def restore_shards(self, max_tick: int) -> int:
        """Every shard to the newest complete checkpoint at or before `max_tick` that all of them
        can read (with a readable planner snapshot), else to the start. Returns its tick (or -1)."""
        for c in self.run.checkpoints.marked_ticks():
            if c > max_tick or self.run.planner_snapshot(c) is None:
                continue
            if self.pipeline.restore(c):
                return c
        self.pipeline.restore(-1)
        return -1

    def _load_fleet_half(self, c: int) -> None:
        """The planner, controls and journal queue as they were at the end of checkpoint `c` (-1:
        the start of the run); the shards are already there."""
        snapshot = (self.run.planner_snapshot(c) or b"") if c >= 0 else None
        with self.ops.lock:
            controls = self.ops.load_locked(c, snapshot)
            self.pipeline.restart_at(c, controls)

    def rewind(self, tick: int) -> dict[str, Any]:
        """Go back to `tick` (the next tick to run afterwards): every shard restores the nearest
        complete checkpoint before it (or rebuilds from the seed), the planner its snapshot, and
        the ticks up to `tick` are replayed with the journal. The journal is kept: running on
        replays the recorded future exactly; to change it, fork a branch. Raises TwinInputError
        (field "tick") for a tick that is not a whole number from 0 to the current tick."""
        if isinstance(tick, bool) or not isinstance(tick, int):
            raise TwinInputError("tick", f"expected a tick number, got {tick!r}")
        p = self.pipeline
        with p.tick_lock:
            if not 0 <= tick <= p.tick:
                raise TwinInputError("tick", f"must be between 0 and the current tick {p.tick}, got {tick}")
            t0 = time.perf_counter()
            self._head = max(self._head, p.tick)
            self.run.history_db.flush()
            c = self.restore_shards(tick - 1)
            self._load_fleet_half(c)
            p.history = deque((s for s in p.history if s.tick <= c), maxlen=p.history.maxlen)
            p.totals = self.run.history_db.totals(upto=c)
            p.run_until(tick)
            return {"tick": tick, "from_checkpoint": c, "replayed": tick - 1 - c,
                    "seconds": round(time.perf_counter() - t0, 3)}
