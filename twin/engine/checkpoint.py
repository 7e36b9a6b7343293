"""Shard checkpoints: written atomically (temporary file, fsync, rename) with a SHA-256 over the
payload, so a crash mid-write leaves the previous complete checkpoint in use and a truncated or
corrupt file is detected and skipped. A checkpoint of tick t is complete when every shard's file
verifies and the COMPLETE marker (written last) names them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twin.engine.files import read_verified, write_atomic
from twin.engine.packs import PACKS, ColumnPacks, pack_dir, referenced_packs
from twin.model.config import FleetConfig
from twin.model.ops.runtime import Control, FleetPlanner, ShardOps
from twin.model.ops.snapshot import (
    planner_applied,
    planner_chunks,
    planner_from_bytes,
    shard_ops_from_record,
    shard_ops_record,
)
from twin.model.records import RecordFormatError, pack, unpack
from twin.model.state import HubState

# A shard checkpoint is one versioned record (twin.model.records): a JSON header with the state's
# meta, the operations' record and the table of its hub columns' chunks in column packs
# (twin.engine.packs: only what changed since the shard's last checkpoint is written), then the
# small named arrays (sparse timers, the operations' arrays). Nothing in it is pickled, so no
# refactor of a class can break a checkpoint silently; a file of another version is refused with a
# clear error (RecordFormatError). Version 2: the columns moved into packs.
SHARD_FORMAT = "twin.shard-checkpoint"
SHARD_VERSION = 2
PLANNER_FILE = "planner.rec"


def shard_chunks(state: HubState, ops: ShardOps, packs: ColumnPacks) -> list[bytes | memoryview]:
    """A shard checkpoint's manifest, in chunks written in turn; the changed column chunks are
    written to packs of the state's tick first (OSError if they cannot be)."""
    state_meta, state_arrays = state.record()
    table = packs.write(state.last_tick, [(k, v) for k, v in state_arrays if k.startswith("col_")])
    ops_record, ops_arrays = shard_ops_record(ops)
    arrays = ([(f"state/{k}", v) for k, v in state_arrays if not k.startswith("col_")]
              + [(f"ops/{k}", v) for k, v in ops_arrays.items()])
    return pack(SHARD_FORMAT, SHARD_VERSION, {"state": state_meta, "ops": ops_record, "columns": table}, arrays)


def parse_shard(payload: bytes | memoryview, config: FleetConfig, packs: ColumnPacks) -> tuple[HubState, ShardOps] | None:
    """(state, operations) of a verified shard manifest, its columns read from `packs`; None if a
    pack it needs is missing or corrupt; RecordFormatError if it is not a shard checkpoint of a
    version this code reads."""
    meta, arrays = unpack(payload, SHARD_FORMAT, (SHARD_VERSION,))
    columns = packs.read(meta["columns"])
    if columns is None:
        return None
    state_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("state/")} | columns
    state = HubState.from_record(meta["state"], state_arrays)
    ops = shard_ops_from_record(meta["ops"], {k[4:]: v for k, v in arrays.items() if k.startswith("ops/")}, config)
    return state, ops


def shard_packs(payload: bytes | memoryview) -> set[str]:
    """The pack names a verified shard manifest uses (RecordFormatError if it is not one)."""
    meta, _ = unpack(payload, SHARD_FORMAT, (SHARD_VERSION,))
    return referenced_packs(meta["columns"])


def planner_snapshot(planner: FleetPlanner, applied: tuple[int, int], controls: Mapping[int, list[Control]]) -> bytes:
    """The fleet half of a checkpoint as bytes (twin.model.ops.snapshot.planner_chunks): the
    planner, the journal position it has accepted and the controls sent for later ticks. A copy,
    so it can be taken under the plan lock and written after it is released."""
    return b"".join(planner_chunks(planner, applied, controls))


def save_planner(path: Path, snapshot: bytes) -> str:
    """Write a planner snapshot atomically and verified; returns the digest."""
    return write_atomic(path, snapshot)


def load_planner(path: Path, config: FleetConfig
                 ) -> tuple[FleetPlanner, tuple[int, int], dict[int, list[Control]]] | None:
    """(planner, applied, controls) of a planner file; None if it is missing, truncated or corrupt;
    RecordFormatError if it verifies but is of another format or version."""
    payload = read_verified(path)
    return None if payload is None else planner_from_bytes(payload, config)


def load_planner_applied(path: Path) -> tuple[int, int] | None:
    """The journal position a planner file had accepted (None: missing or corrupt)."""
    payload = read_verified(path)
    return None if payload is None else planner_applied(payload)


class CheckpointStore:
    def __init__(self, run_dir: Path):
        self.root = run_dir / "checkpoints"

    def tick_dir(self, tick: int) -> Path:
        return self.root / f"tick-{tick:09d}"

    def shard_path(self, tick: int, shard: int) -> Path:
        return self.tick_dir(tick) / f"shard-{shard:04d}.ckpt"

    def planner_path(self, tick: int) -> Path:
        return self.tick_dir(tick) / PLANNER_FILE

    def mark_complete(self, tick: int, shards: int, extra: dict[str, Any]) -> None:
        marker = {"tick": tick, "shards": shards, **extra}
        write_atomic(self.tick_dir(tick) / "COMPLETE", json.dumps(marker).encode())

    def marked_ticks(self) -> list[int]:
        """Ticks whose COMPLETE marker verifies, newest first. Cheap (the shard files are not read):
        a shard checks its own file when it loads it, and falls back to an older checkpoint."""
        if not self.root.exists():
            return []
        out = []
        for d in sorted(self.root.glob("tick-*"), reverse=True):
            raw = read_verified(d / "COMPLETE")
            if raw is not None:
                out.append(json.loads(raw)["tick"])
        return out

    def complete_ticks(self) -> list[int]:
        """Ticks with a complete, verified checkpoint (every shard manifest read and checked, its packs
        there), newest first."""
        out = []
        for tick in self.marked_ticks():
            marker = json.loads(read_verified(self.tick_dir(tick) / "COMPLETE") or b"{}")
            if all(self._shard_whole(tick, i) for i in range(marker.get("shards", 0))):
                out.append(tick)
        return out

    def _shard_whole(self, tick: int, shard: int) -> bool:
        """The shard's manifest verifies and every pack it names is there (packs are verified
        when the shard reads them)."""
        payload = read_verified(self.shard_path(tick, shard))
        if payload is None:
            return False
        try:
            names = shard_packs(payload)
        except RecordFormatError:
            return False
        folder = pack_dir(self.root, shard)
        return all((folder / name).is_file() for name in names)

    def prune(self, *, keep: int, now: int, every: int) -> None:
        """Delete checkpoints that `retained` does not keep, and unfinished ones older than the newest."""
        import shutil

        marked = self.marked_ticks()
        if not marked:
            return
        kept = retained(marked, keep=keep, now=now, every=every)
        newest = marked[0]
        for d in self.root.glob("tick-*"):
            tick = int(d.name.split("-")[1])
            if tick not in kept and tick < newest:
                shutil.rmtree(d, ignore_errors=True)
        # Packs of later ticks may belong to checkpoints shards are writing now (ticks in flight).
        self.collect_packs(upto=min(newest, now - 1))

    def collect_packs(self, *, upto: int) -> int:
        """Delete the column packs (twin.engine.packs) no checkpoint left names, of ticks up to
        `upto` (a later pack may belong to a checkpoint still being written); returns how many.
        A manifest that cannot be read keeps every pack (it might name any)."""
        folder = self.root / PACKS
        if not folder.exists():
            return 0
        used: set[str] = set()
        for d in self.root.glob("tick-*"):
            for f in d.glob("shard-*.ckpt"):
                payload = read_verified(f)
                if payload is None:
                    continue  # unusable anyway: a corrupt or half-written manifest names nothing we can read
                try:
                    used |= {f"{f.stem}/{p}" for p in shard_packs(payload)}
                except RecordFormatError:
                    return 0
        removed = 0
        for f in folder.glob("shard-*/*.pack"):
            if f"{f.parent.name}/{f.name}" in used:
                continue
            try:
                tick = int(f.name.rsplit("-", 2)[1])
            except (IndexError, ValueError):
                continue
            if tick <= upto:
                f.unlink(missing_ok=True)
                removed += 1
        return removed

    def pack_bytes(self) -> int:
        """Bytes of column packs on disk."""
        folder = self.root / PACKS
        return sum(f.stat().st_size for f in folder.glob("shard-*/*.pack")) if folder.exists() else 0

    def latest(self) -> int | None:
        ticks = self.marked_ticks()
        return ticks[0] if ticks else None

    def link_from(self, other: CheckpointStore, tick: int) -> None:
        """Give this run checkpoint `tick` of another (a fork's starting point): hard links, since
        checkpoint files are never written in place; a copy where links are not possible), with the
        column packs its shard manifests name."""
        src, dst = other.tick_dir(tick), self.tick_dir(tick)
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.name.endswith(".tmp"):
                continue
            _link(f, dst / f.name)
            payload = read_verified(f) if f.name.startswith("shard-") and f.suffix == ".ckpt" else None
            if payload is None:
                continue
            shard = int(f.stem.split("-")[1])
            src_packs, dst_packs = pack_dir(other.root, shard), pack_dir(self.root, shard)
            dst_packs.mkdir(parents=True, exist_ok=True)
            for name in shard_packs(payload):
                if not (dst_packs / name).exists():
                    _link(src_packs / name, dst_packs / name)


def _link(src: Path, dst: Path) -> None:
    """A hard link (checkpoint files are never written in place); a copy where links are not possible."""
    import shutil

    try:
        os.link(src, dst)
    except FileExistsError:
        pass
    except OSError:
        shutil.copy2(src, dst)


def retained(ticks: list[int], *, keep: int, now: int, every: int) -> set[int]:
    """Which checkpoints to keep: every one at or after `now` (after a rewind they are still the
    run's future), the newest `keep` before it, and a thinning set further back: a checkpoint `age`
    intervals old is kept only if its index is a multiple of 2^j, j growing with log2(age / keep).
    The requirement only grows with age, so a checkpoint once dropped is never wanted again, and
    about keep/2 survive per doubling of age: a rewind far back replays at most about as many
    ticks as it goes back, and a rewind with none left rebuilds from tick 0 (seed + journal)."""
    every = max(1, every)
    before = sorted((t for t in ticks if t < now), reverse=True)
    out = {t for t in ticks if t >= now} | set(before[:keep])
    for t in before[keep:]:
        age = max(0, (now - 1 - t) // every)
        j = (age // keep).bit_length()
        if ((t + 1) // every) % (1 << j) == 0:
            out.add(t)
    return out
