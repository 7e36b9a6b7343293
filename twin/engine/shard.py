"""ShardActor: one Ray actor process owning whole blocks of hubs as columnar state."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import ray

from twin.engine.checkpoint import CheckpointStore, parse_shard, read_verified, shard_chunks, write_atomic
from twin.engine.packs import ColumnPacks
from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.kernel import slot_bounds, step
from twin.model.ops.commands import Command
from twin.model.ops.rollout import shard_census
from twin.model.ops.runtime import Control, ShardOps
from twin.model.query import aggregate_counts, hub_record
from twin.model.state import HubState
from twin.model.summary import TickSummary


class Shard:
    """The shard's behaviour without Ray, so it can be tested and profiled in-process."""

    def __init__(self, config: dict[str, Any], first_block: int, n_blocks: int, *, run_dir: str | None = None,
                 index: int = 0):
        self.config = FleetConfig.from_dict(config)
        self.first_block = first_block
        self.n_blocks = n_blocks
        self.index = index
        self.ops = ShardOps(self.config)
        self.bounds = slot_bounds(self.config)
        self.run_dir = Path(run_dir) if run_dir else None
        self.shared: Any = None  # SharedColumns once share() is called
        self.checkpoint_s = 0.0  # seconds spent writing checkpoints, and how many (twin bench horizon)
        self.checkpoints_written = 0
        # What this shard's last checkpoint held: the next writes only the column chunks that changed.
        self.packs = ColumnPacks(CheckpointStore(self.run_dir).root if self.run_dir else Path("."), index)
        t = time.perf_counter()
        # A restarted actor re-runs this constructor: it resumes from the newest complete checkpoint
        # (the supervisor then replays the ticks since), so recovery is not a second code path.
        restored = self._restore(CheckpointStore(self.run_dir).marked_ticks()) if self.run_dir else None
        if restored is None:
            self._build()
        self.build_s = time.perf_counter() - t

    def _build(self) -> None:
        self.state: HubState = generate(self.config, self.first_block, self.n_blocks)
        self.ops = ShardOps(self.config)
        self.packs.forget()
        self._reshare()

    def _reshare(self) -> None:
        """A new state (built, restored) moves into the shared segment, if there is one."""
        if getattr(self, "shared", None) is not None:
            self.shared.adopt(self.state)

    def share(self) -> Any:
        """Put the columns in shared memory for readers on this node; returns their Descriptor."""
        from twin.engine.shared_state import SharedColumns, run_tag

        if self.shared is None:
            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
            self.shared = SharedColumns(self.state, node, tag=run_tag(self.run_dir))
        return self.shared.descriptor()


    def _restore(self, ticks: list[int]) -> int | None:
        """Load the first of `ticks` whose file for this shard verifies; None if none does."""
        if self.run_dir is None:
            return None
        store = CheckpointStore(self.run_dir)
        for tick in ticks:
            payload = read_verified(store.shard_path(tick, self.index))
            if payload is None:
                continue
            parsed = parse_shard(payload, self.config, self.packs)
            if parsed is None:
                continue  # a pack it needs is missing or corrupt: an older checkpoint, if any
            self.state, self.ops = parsed
            self._reshare()
            return tick
        return None

    def restore(self, tick: int) -> bool:
        """Go to the end of checkpoint `tick` (-1: rebuild from the seed, the start of the run).
        False if this shard's file of that checkpoint is missing or corrupt (nothing changes)."""
        t = time.perf_counter()
        if tick < 0:
            self._build()
            ok = True
        else:
            ok = self._restore([tick]) == tick
        if ok:
            self.build_s = time.perf_counter() - t
        return ok

    def checkpoint(self, path: str) -> str:
        t = time.perf_counter()
        digest = write_atomic(Path(path), shard_chunks(self.state, self.ops, self.packs))
        self.checkpoint_s += time.perf_counter() - t
        self.checkpoints_written += 1
        return digest

    # -- stepping ------------------------------------------------------------------------
    def step(self, tick: int, controls: list[Control] | None = None, checkpoint: str | None = None) -> TickSummary:
        if self.shared is None:
            summary = step(self.state, tick, self.config, self.ops, controls or (), self.bounds)
        else:
            self.shared.begin()  # readers in other processes wait or ask the shard meanwhile
            try:
                summary = step(self.state, tick, self.config, self.ops, controls or (), self.bounds)
            finally:
                self.shared.end(self.state.last_tick)
        if checkpoint:
            self.checkpoint(checkpoint)
        return summary

    def census(self, cmd: Command) -> dict[str, int]:
        """{firmware version: devices} of this shard a rollout's selector matches now."""
        return shard_census(self.state, cmd, self.ops.versions)

    # -- queries -------------------------------------------------------------------------
    def hub(self, hub: int) -> dict[str, Any]:
        tick = self.state.last_tick
        return hub_record(self.state, self.config, self.ops.network.up_by_area(max(tick, 0)), hub, tick,
                          versions=self.ops.versions)

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        from twin.model.readings import read

        return read(self.state, self.config, hub, srv, fuel, self.state.last_tick)

    def service_facts(self, hub: int, srv: str, fuel: str, record: bool = False) -> dict[str, Any]:
        from twin.model.readings import service_facts

        tick = self.state.last_tick
        return service_facts(self.state, self.config, self.ops.network.up_by_area(max(tick, 0)), hub, tick, srv, fuel,
                             record, versions=self.ops.versions)

    def register_facts(self, hubs: np.ndarray, fuel: str) -> dict[str, Any]:
        """readings.register_facts of `hubs` (dense ids, all of this shard): the premises and SR
        4.1.1 readings of many hubs in one call (a bulk submission's). KeyError for a hub not here."""
        from twin.model.readings import register_facts

        rows = np.asarray(hubs, dtype=np.int64) - self.state.offset
        if rows.size and (rows.min() < 0 or rows.max() >= self.state.n_hubs):
            raise KeyError("hubs outside this shard")
        tick = self.state.last_tick
        return register_facts(self.state, self.config, self.ops.network.up_by_area(max(tick, 0)), rows, tick, fuel)

    def hubs(self, calls: list[tuple[int]]) -> list[Any]:
        """Several hub() calls in one (API batching); a missing hub comes back as its KeyError."""
        out: list[Any] = []
        for (hub,) in calls:
            try:
                out.append(self.hub(hub))
            except KeyError as e:
                out.append(e)
        return out

    def service_facts_many(self, calls: list[tuple[int, str, str, bool]]) -> list[Any]:
        out: list[Any] = []
        for hub, srv, fuel, record in calls:
            try:
                out.append(self.service_facts(hub, srv, fuel, record))
            except KeyError as e:
                out.append(e)
        return out

    def list_hubs(self, filters: dict[str, Any], start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to `limit` hub records matching `filters` from hub id `start`; and where to resume."""
        from twin.model.query import match_hubs

        tick = self.state.last_tick
        up = self.ops.network.up_by_area(max(tick, 0))
        hubs, next_start = match_hubs(self.state, up, filters, start, limit)
        return [hub_record(self.state, self.config, up, h, tick, versions=self.ops.versions) for h in hubs], next_start

    def aggregate(self, by: list[str]) -> dict[tuple[int, ...], list[int]]:
        return aggregate_counts(self.state, self.ops.network.up_by_area(max(self.state.last_tick, 0)), by,
                                versions=self.ops.versions)

    def digests(self) -> list[bytes]:
        return self.state.block_digests()

    def export_state(self) -> bytes:
        return self.state.to_bytes()

    def import_state(self, data: bytes) -> None:
        self.state = HubState.from_bytes(data)
        self._reshare()

    def floor_pass(self) -> float:
        """Seconds for one plain read of every byte of state: the memory-bandwidth floor."""
        t = time.perf_counter()
        for arr in self.state.cols.values():
            np.bitwise_or.reduce(arr.view(np.uint8))
        return time.perf_counter() - t

    def info(self) -> dict[str, Any]:
        proc = psutil.Process()
        return {
            "first_block": self.first_block,
            "n_blocks": self.n_blocks,
            "hubs": self.state.n_hubs,
            "state_bytes": self.state.nbytes,
            "index_bytes": (self.state.area_rows.nbytes + self.state.area_keys.nbytes
                            + self.state.prepay_rows.nbytes + self.state.prepay_due.nbytes),
            "rss_bytes": proc.memory_info().rss,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "build_s": self.build_s,
            "checkpoint_s": self.checkpoint_s,
            "checkpoints_written": self.checkpoints_written,
            "tick": self.state.last_tick,
            "node_ip": ray.util.get_node_ip_address(),  # the machine this shard's process runs on
            # Operations this shard steps and reports each tick: the work in flight here.
            "live_operations": len(self.ops.ops),
            "pid": proc.pid,
            "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else "",
        }


# Ray's type stubs know neither concurrency_groups on a class nor what @ray.method returns, hence
# the ignores below; the signatures are Shard's own.
@ray.remote(concurrency_groups={"query": 4}, max_restarts=-1, max_task_retries=0)  # type: ignore[call-overload]
class ShardActor(Shard):
    """A shard as a Ray actor. Bulk state never leaves it except through export_state.

    Steps run one at a time in submission order (the default group); hub lookups and reads run
    in a separate group so a lookup does not wait for a tick to finish."""

    @ray.method(concurrency_group="query")
    def hub(self, hub: int) -> dict[str, Any]:  # type: ignore[override]
        return Shard.hub(self, hub)

    @ray.method(concurrency_group="query")
    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:  # type: ignore[override]
        return Shard.read(self, hub, srv, fuel)

    @ray.method(concurrency_group="query")
    def hubs(self, calls: list[tuple[int]]) -> list[Any]:  # type: ignore[override]
        return Shard.hubs(self, calls)

    @ray.method(concurrency_group="query")
    def register_facts(self, hubs: np.ndarray, fuel: str) -> dict[str, Any]:  # type: ignore[override]
        return Shard.register_facts(self, hubs, fuel)

    @ray.method(concurrency_group="query")
    def service_facts_many(self, calls: list[tuple[int, str, str, bool]]) -> list[Any]:  # type: ignore[override]
        return Shard.service_facts_many(self, calls)
