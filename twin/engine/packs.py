"""Shard checkpoints that write only what changed, compressed: the hub columns in column packs.

A full shard state is about 50 bytes per hub (1.5 GB at 30M hubs), and a daily checkpoint kept
every column whole: a simulated year kept about 24 GB. Most columns do not change from one day to
the next (models, suppliers, consumption, cells), and those that do compress well (fault and
status bits are mostly zero, last-contact ticks run in long equal stretches). So:

- each hub column is cut in chunks of `CHUNK_BYTES`; a checkpoint compares every chunk with the
  shard's copy of the last checkpoint it wrote or read (`ColumnPacks.shadow`), and writes only the
  chunks that differ, zstd-compressed (level 1), in one *pack* per column
  (`packs/shard-NNNN/<column>-<tick>-<id>.pack`);
- a changed chunk is written as its XOR with the chunk's previous version (mostly zeros when a few
  hubs changed, so it compresses to almost nothing and fast), up to `MAX_DELTAS` in a chain, then
  whole again, so a restore decompresses at most MAX_DELTAS + 1 pieces per chunk;
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

from twin.engine.files import read_verified, sync_folder, write_atomic

CHUNK_BYTES = 1 << 20
ZSTD_LEVEL = 1  # measured 2026-12-01: level 3 was 5x slower for 2% less on a 1M-hub state
PACKS = "packs"
# The shard keeps a copy of every column as of its last checkpoint: one more state's worth of memory.
SHADOW_BYTES_PER_STATE_BYTE = 1.0

MAX_DELTAS = 7

# Where one chunk lies: (pack file name, offset, length, the previous version's Ref when this piece
# is an XOR with it, else None).
Ref = tuple[str, int, int, "Ref | None"]
_NONE: Ref = ("", 0, 0, None)


def _depth(ref: Ref | None) -> int:
    n = 0
    while ref is not None:
        n, ref = n + 1, ref[3]
    return n


def _to_json(ref: Ref) -> list[Any]:
    return [ref[0], ref[1], ref[2]] + ([_to_json(ref[3])] if ref[3] is not None else [])


def _from_json(v: list[Any]) -> Ref:
    if not isinstance(v, list) or len(v) not in (3, 4):
        raise ValueError(f"a chunk reference of {len(v) if isinstance(v, list) else type(v).__name__}")
    prev = _from_json(v[3]) if len(v) == 4 else None
    return (str(v[0]), int(v[1]), int(v[2]), prev)


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
        self.dir.mkdir(parents=True, exist_ok=True)
        table: dict[str, dict[str, Any]] = {}
        moves: list[tuple[str, np.ndarray, list[int], list[Ref]]] = []
        for name, arr in columns:
            raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
            old, refs = self.shadow.get(name), self.refs.get(name)
            if old is None or refs is None or old.size != raw.size:  # no earlier checkpoint of it: all of it
                old = None
                changed = list(range(len(_chunks(raw))))
                new_refs = [_NONE] * len(changed)
            else:
                changed = [i for i, at in enumerate(_chunks(raw))
                           if not np.array_equal(raw[at:at + CHUNK_BYTES], old[at:at + CHUNK_BYTES])]
                new_refs = list(refs)
            if changed:
                pack = f"{name}-{tick:09d}-{uuid.uuid4().hex[:12]}.pack"
                parts, off = [], 0
                for i in changed:
                    at = i * CHUNK_BYTES
                    piece = raw[at:at + CHUNK_BYTES]
                    prev = None if old is None or _depth(new_refs[i]) > MAX_DELTAS else new_refs[i]
                    if old is not None and prev is not None:
                        piece = np.bitwise_xor(piece, old[at:at + CHUNK_BYTES])
                    z = self._cctx.compress(piece.data)
                    parts.append(z)
                    new_refs[i] = (pack, off, len(z), prev)
                    off += len(z)
                write_atomic(self.dir / pack, parts)  # fsynced; the folder once below
                moves.append((name, raw, changed, new_refs))
            else:
                moves.append((name, raw, [], new_refs))
            table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "chunks": [_to_json(r) for r in new_refs]}
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
        packs: dict[str, bytes] = {}
        out: dict[str, np.ndarray] = {}
        shadow: dict[str, np.ndarray] = {}
        refs: dict[str, list[Ref]] = {}
        for name, col in table.items():
            dtype = np.dtype(col["dtype"])
            shape = tuple(col["shape"])
            raw = np.empty(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, np.uint8)
            try:
                chunks = [_from_json(v) for v in col["chunks"]]
            except (TypeError, ValueError):
                return None
            if len(chunks) != len(_chunks(raw)):
                return None
            for i, ref in enumerate(chunks):
                at = i * CHUNK_BYTES
                piece = self._piece(ref, min(CHUNK_BYTES, raw.size - at), packs)
                if piece is None:
                    return None
                raw[at:at + piece.size] = piece
            out[name] = raw.view(dtype).reshape(shape)
            shadow[name], refs[name] = raw, chunks
        self.shadow, self.refs = shadow, refs
        return out

    def _piece(self, ref: Ref, size: int, packs: dict[str, bytes]) -> np.ndarray | None:
        """One chunk's bytes: its piece, XORed with the previous version's when it is a delta."""
        pack, off, n, prev = ref
        if pack not in packs:
            payload = read_verified_pack(self.dir, pack)
            if payload is None:
                return None
            packs[pack] = payload
        try:
            data = self._dctx.decompress(packs[pack][off:off + n], max_output_size=size)
        except zstandard.ZstdError:
            return None
        if len(data) != size:
            return None
        piece = np.frombuffer(data, np.uint8)
        if prev is None:
            return piece
        base = self._piece(prev, size, packs)
        return None if base is None else np.bitwise_xor(piece, base)


def read_verified_pack(folder: Path, name: str) -> bytes | None:
    return read_verified(folder / name) if name and "/" not in name and not name.startswith(".") else None


def referenced_packs(table: dict[str, dict[str, Any]]) -> set[str]:
    """The pack names a manifest's column table uses, the delta chains' included."""
    out: set[str] = set()
    for col in table.values():
        for v in col["chunks"]:
            ref: Ref | None = _from_json(v)
            while ref is not None:
                out.add(ref[0])
                ref = ref[3]
    return out
