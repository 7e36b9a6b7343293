"""What a run will need before it builds anything: memory (the whole process tree at its peak) and
disk (the checkpoints kept, the tick history), from factors measured on the 2-core, 24 GiB machine
and named here with where each comes from, so a change that moves one (compressed checkpoints) is
one constant. `twin run` and `twin up` refuse, exit 2, when either does not fit (twin.cli.base)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from twin.engine.checkpoint import retained
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.state import BYTES_PER_HUB

GIB = 2**30

# Peak RSS of the whole process tree (driver, Ray's GCS and raylet, the shard actors) against the
# hub state's bytes, measured by `twin bench` on 2 shards: a day of 1M, 3M, 10M and 30M hubs peaked
# at 1.02, 1.17, 1.69 and 3.45 GB (bench-results/engine.json, 2026-11-21; state 50 B/hub), and at
# 1.07 and 3.31 GB for 1M and 30M (engine-2026-11-30.json); a `twin run` with checkpoints and
# history peaked at 1.28 GB for 3M hubs over 2 days and at 1.70 GB for 10M over one (issue 16).
# The steepest step, 10M to 30M, is 1.76 bytes per state byte, and small fleets sit near 1.0 GB:
# the line 1.76 x state + 1.0 GB lies on or above every measurement (by at most 0.2 GB), so a
# larger fleet is judged by the steepest growth seen, not the average.
MEMORY_PER_STATE_BYTE = 1.76
MEMORY_BASE_BYTES = 1_000_000_000
# `twin up` serves the API and the dashboard too: 1,232 MiB at 1M hubs (issue 16) against the
# 1.07 GB of the engine alone, about 0.4 GiB more.
SERVING_BYTES = int(0.4 * GIB)
# Checkpoints are column packs (twin.engine.packs): the first writes every column compressed, each
# later one only the chunks that changed, as deltas, and kept checkpoints share what did not change.
# Measured by `twin bench horizon` (2026-12-01): the first checkpoint 17.9 B/hub (1M hubs); a year of
# daily checkpoints of 1M hubs kept 97.5 B/hub in 16 checkpoints, 45 B/hub in 9 after 30 days; a year
# of 100k hubs (columns smaller than one chunk, so less shared) 150 B/hub in 17. The line 20 + 8 per
# checkpoint kept lies on or above each.
CHECKPOINT_FIRST_BYTES_PER_HUB = 20
CHECKPOINT_KEPT_BYTES_PER_HUB = 8
# A shard that writes checkpoints keeps a copy of its columns as of the last one (to write only
# what changed): one more state's worth of memory.
SHADOW_BYTES_PER_STATE_BYTE = 1.0
# The tick history (DuckDB/Parquet) holds fleet-level summaries, so its size per tick does not
# grow with the fleet: 95,026 bytes for 96 ticks of 3M hubs (`twin run`, issue 16), rounded up.
HISTORY_BYTES_PER_TICK = 1_024
# A scenario run (`twin run`) also keeps the figures its report reads of every tick, so a run
# resumed after its driver died writes the whole report (twin.studies.report_ticks): 1,504,886
# bytes for 480 ticks of the storm-outage scenario, capacity model on, rounded up.
REPORT_BYTES_PER_TICK = 3_200
# Without a length (`twin up`), the disk is judged for the checkpoints a day keeps.
OPEN_ENDED_DAYS = 1.0
DEFAULT_CHECKPOINT_EVERY = 48  # ticks: a checkpoint a simulated day, as `twin run` and `twin up` run


@dataclass(frozen=True)
class RunNeeds:
    """What a run needs (bytes), with its parts, to say and to check."""

    hubs: int
    shards: int
    state_bytes: int  # the hub columns
    memory_bytes: int  # peak of the process tree, restores and serving included
    checkpoint_bytes: int  # every checkpoint kept, their shared packs counted once
    checkpoints_kept: int  # at the most, the one being written included
    history_bytes: int
    days: float | None  # None: open-ended (judged for OPEN_ENDED_DAYS)
    report_bytes: int = 0  # a scenario run's per-tick report figures (none for `twin up`)

    @property
    def disk_bytes(self) -> int:
        return self.checkpoint_bytes + self.history_bytes + self.report_bytes

    def memory_text(self) -> str:
        return (f"about {self.memory_bytes / GIB:.1f} GiB of memory ({self.state_bytes / GIB:.2f} GiB of hub state, "
                f"{BYTES_PER_HUB} B/hub, x {MEMORY_PER_STATE_BYTE} measured peak + "
                f"{MEMORY_BASE_BYTES / GIB:.2f} GiB for Ray and the interpreters, the shards' copy of the last "
                "checkpoint, and one shard's checkpoint read back on a restore)")

    def disk_text(self) -> str:
        span = f"{self.days:g} days" if self.days is not None else f"the first {OPEN_ENDED_DAYS:g} day"
        return (f"about {self.disk_bytes / GIB:.1f} GiB of disk for {span} ({self.checkpoints_kept} checkpoint(s) "
                f"in {self.checkpoint_bytes / GIB:.2f} GiB of column packs, {CHECKPOINT_FIRST_BYTES_PER_HUB} B/hub "
                f"for the first and {CHECKPOINT_KEPT_BYTES_PER_HUB} for each more, and "
                f"{self.history_bytes / 2**20:.1f} MiB of history"
                + (f", {self.report_bytes / 2**20:.1f} MiB of report figures)" if self.report_bytes else ")"))


def checkpoints_kept(ticks: int, every: int | None) -> int:
    """The most checkpoints a run of `ticks` ticks holds at once, checkpointing every `every`
    ticks (None or 0: none): those `retained` keeps near its end (the set only grows with the run,
    about KEEP_CHECKPOINTS/2 more per doubling of its length) with the one being written."""
    from twin.engine.rundir import KEEP_CHECKPOINTS  # (rundir imports Ray: not for every command's --help)

    if not every or ticks < every:
        return 0
    marked = list(range(every - 1, ticks, every))
    # The most at once: while the last is written (the others pruned as at the one before it),
    # or after it (pruned as at the end).
    writing = len(retained(marked[:-1], keep=KEEP_CHECKPOINTS, now=marked[-1], every=every)) + 1
    return max(writing, len(retained(marked, keep=KEEP_CHECKPOINTS, now=ticks, every=every)))


def estimate_needs(hubs: int, *, shards: int, checkpoint_every: int | None, days: float | None,
                   serving: bool = False, report: bool = False) -> RunNeeds:
    """What a run of `hubs` hubs on `shards` shard actors needs, checkpointing every
    `checkpoint_every` ticks (None: never), for `days` simulated days (None: open-ended), with the
    API and dashboard if `serving`, keeping its report's figures per tick if `report` (`twin
    run`). ValueError for a shard count below one."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    state = hubs * BYTES_PER_HUB
    ticks = max(1, round((days if days is not None else OPEN_ENDED_DAYS) * HALF_HOURS_PER_DAY))
    kept = checkpoints_kept(ticks, checkpoint_every)
    checkpoints = hubs * (CHECKPOINT_FIRST_BYTES_PER_HUB + CHECKPOINT_KEPT_BYTES_PER_HUB * (kept - 1)) if kept else 0
    shadow = state * SHADOW_BYTES_PER_STATE_BYTE if kept else 0
    # A shard restoring (a restart, resume or rewind) reads its packs beside its state.
    memory = int(state * MEMORY_PER_STATE_BYTE + MEMORY_BASE_BYTES + shadow + checkpoints / shards
                 + (SERVING_BYTES if serving else 0))
    return RunNeeds(hubs=hubs, shards=shards, state_bytes=state, memory_bytes=memory, checkpoint_bytes=checkpoints,
                    checkpoints_kept=kept, history_bytes=ticks * HISTORY_BYTES_PER_TICK, days=days,
                    report_bytes=ticks * REPORT_BYTES_PER_TICK if report else 0)


def free_disk_bytes(run_dir: Path) -> int:
    """Free bytes of the filesystem `run_dir` is (or will be) on: that of its nearest existing
    ancestor."""
    p = Path(run_dir).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free
