"""Shard checkpoints that write only what changed, compressed: the hub columns in column packs.

A full shard state is about 50 bytes per hub (1.5 GB at 30M hubs), and a daily checkpoint kept
every column whole: a simulated year kept about 24 GB. Most columns do not change from one day to
the next (models, suppliers, consumption, cells), and those that do compress well (fault and
status bits are mostly zero, last-contact ticks run in long equal stretches). So:

- each hub column is cut in chunks of `CHUNK_BYTES`; a checkpoint compares every chunk with the
  shard's copy of the last checkpoint it wrote or read (`ColumnPacks.shadow`), and writes only the
  chunks that differ, zstd-compressed (level 1: about 3x on a fresh fleet, 20x on the daily change),
  in one *pack* per column (`packs/shard-NNNN/<column>-<tick>-<id>.pack`);
- the shard's checkpoint file is then a small manifest (`tick-T/shard-NNNN.ckpt`): the state's meta,
  the operations' record, the small arrays, and for each column the pack, offset and length of
  every chunk, most of them in packs of earlier checkpoints;
- a pack is never written in place (its name carries a random id), so a manifest can never point
  into a pack rewritten after a rewind; `CheckpointStore.prune` deletes a pack once no kept
  checkpoint names it. One pack per column keeps a stray chunk (a register that changed in one
  chunk) from keeping a whole day's other changes alive.

Every pack and manifest is written atomically with its SHA-256 (twin.engine.checkpoint.write_atomic)
and verified when read; a checkpoint with a missing or corrupt pack is not used (the shard falls
back to an older one, as for a corrupt manifest).

Cost: the comparison reads the state and its copy once (memory bandwidth), and the copy doubles the
shard's resident state (`SHADOW_BYTES_PER_STATE_BYTE`); compression runs on the changed chunks only."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

CHUNK_BYTES = 1 << 20
ZSTD_LEVEL = 1  # measured 2026-12-01: level 3 was 5x slower for 2% less on a 1M-hub state
PACKS = "packs"
# The shard keeps a copy of every column as of its last checkpoint: one more state's worth of memory.
SHADOW_BYTES_PER_STATE_BYTE = 1.0

Ref = tuple[str, int, int]  # (pack file name, offset, length) of one compressed chunk


def pack_dir(checkpoint_root: Path, shard: int) -> Path:
    return checkpoint_root / PACKS / f"shard-{shard:04d}"


def _chunks(raw: np.ndarray) -> range:
    return range(0, raw.size, CHUNK_BYTES)


class ColumnPacks:
    """One shard's column packs: what its last checkpoint held (to write the next as a change), and
    the reading of a manifest's columns back into arrays."""

    def __init__(self, checkpoint_root: Path, shard: int) -> None:
        self.dir = pack_dir(checkpoint_root, shard)
        self.shadow: dict[str, np.ndarray] = {}  # column -> its bytes at the last checkpoint (uint8)
        self.refs: dict[str, list[Ref]] = {}  # column -> where each of its chunks lies
        self._cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._dctx = zstandard.ZstdDecompressor()

    def forget(self) -> None:
        """The next checkpoint writes every chunk (after a rebuild from the seed)."""
        self.shadow, self.refs = {}, {}

    def write(self, tick: int, columns: list[tuple[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
        """Write the chunks of `columns` that changed since the last checkpoint into packs of
        `tick`; returns the manifest's column table {name: {dtype, shape, chunks: [[pack, off, len]]}}.
        The shadow moves on only once every pack is on disk (an OSError leaves it as it was)."""
        from twin.engine.checkpoint import sync_folder, write_atomic

        self.dir.mkdir(parents=True, exist_ok=True)
        table: dict[str, dict[str, Any]] = {}
        moves: list[tuple[str, np.ndarray, list[int], list[Ref]]] = []
        for name, arr in columns:
            raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
            old, refs = self.shadow.get(name), self.refs.get(name)
            fresh = old is None or refs is None or old.size != raw.size
            changed = [i for i, at in enumerate(_chunks(raw))
                       if fresh or not np.array_equal(raw[at:at + CHUNK_BYTES], old[at:at + CHUNK_BYTES])]
            new_refs = list(refs) if not fresh and refs is not None else [("", 0, 0)] * len(_chunks(raw))
            if changed:
                pack = f"{name}-{tick:09d}-{uuid.uuid4().hex[:12]}.pack"
                parts, off = [], 0
                for i in changed:
                    at = i * CHUNK_BYTES
                    z = self._cctx.compress(raw[at:at + CHUNK_BYTES].data)
                    parts.append(z)
                    new_refs[i] = (pack, off, len(z))
                    off += len(z)
                write_atomic(self.dir / pack, parts)  # fsynced; the folder once below
                moves.append((name, raw, changed, new_refs))
            else:
                moves.append((name, raw, [], new_refs))
            table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "chunks": [list(r) for r in new_refs]}
        sync_folder(self.dir)
        for name, raw, changed, new_refs in moves:
            if name not in self.shadow or self.shadow[name].size != raw.size:
                self.shadow[name] = raw.copy()
            else:
                for i in changed:
                    at = i * CHUNK_BYTES
                    self.shadow[name][at:at + CHUNK_BYTES] = raw[at:at + CHUNK_BYTES]
            self.refs[name] = new_refs
        return table

    def read(self, table: dict[str, dict[str, Any]]) -> dict[str, np.ndarray] | None:
        """The columns of a manifest's table as arrays (and the shadow set to them); None if a pack
        it names is missing, corrupt or does not hold the chunk (that checkpoint is not usable)."""
        from twin.engine.checkpoint import read_verified

        packs: dict[str, bytes] = {}
        out: dict[str, np.ndarray] = {}
        shadow: dict[str, np.ndarray] = {}
        refs: dict[str, list[Ref]] = {}
        for name, col in table.items():
            dtype = np.dtype(col["dtype"])
            shape = tuple(col["shape"])
            raw = np.empty(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, np.uint8)
            chunks = [(str(p), int(o), int(n)) for p, o, n in col["chunks"]]
            if len(chunks) != len(_chunks(raw)):
                return None
            for i, (pack, off, n) in enumerate(chunks):
                if pack not in packs:
                    payload = read_verified(self.dir / pack) if pack and "/" not in pack else None
                    if payload is None:
                        return None
                    packs[pack] = payload
                at = i * CHUNK_BYTES
                want = min(CHUNK_BYTES, raw.size - at)
                try:
                    data = self._dctx.decompress(packs[pack][off:off + n], max_output_size=want)
                except zstandard.ZstdError:
                    return None
                if len(data) != want:
                    return None
                raw[at:at + want] = np.frombuffer(data, np.uint8)
            out[name] = raw.view(dtype).reshape(shape)
            shadow[name], refs[name] = raw, chunks
        self.shadow, self.refs = shadow, refs
        return out


def referenced_packs(table: dict[str, dict[str, Any]]) -> set[str]:
    """The pack names a manifest's column table uses."""
    return {str(ref[0]) for col in table.values() for ref in col["chunks"]}
