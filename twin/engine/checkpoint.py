"""Shard checkpoints: written atomically (temporary file, fsync, rename) with a SHA-256 over the
payload, so a crash mid-write leaves the previous complete checkpoint in use and a truncated or
corrupt file is detected and skipped. A checkpoint of tick t is complete when every shard's file
verifies and the COMPLETE marker (written last) names them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MAGIC = b"TWINCKPT1\n"


def write_atomic(path: Path, payload: bytes) -> str:
    """Write `payload` with its checksum; returns the hex digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(payload).digest()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + digest + payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return digest.hex()


def read_verified(path: Path) -> bytes | None:
    """The payload, or None if the file is missing, truncated or corrupt."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 32
    if len(data) < head or not data.startswith(MAGIC):
        return None
    digest, payload = data[len(MAGIC):head], data[head:]
    return payload if hashlib.sha256(payload).digest() == digest else None


class CheckpointStore:
    def __init__(self, run_dir: Path):
        self.root = run_dir / "checkpoints"

    def tick_dir(self, tick: int) -> Path:
        return self.root / f"tick-{tick:09d}"

    def shard_path(self, tick: int, shard: int) -> Path:
        return self.tick_dir(tick) / f"shard-{shard:04d}.ckpt"

    def mark_complete(self, tick: int, shards: int, extra: dict[str, Any]) -> None:
        marker = {"tick": tick, "shards": shards, **extra}
        write_atomic(self.tick_dir(tick) / "COMPLETE", json.dumps(marker).encode())

    def complete_ticks(self) -> list[int]:
        """Ticks with a complete, verified checkpoint, newest first."""
        if not self.root.exists():
            return []
        out = []
        for d in sorted(self.root.glob("tick-*"), reverse=True):
            raw = read_verified(d / "COMPLETE")
            if raw is None:
                continue
            marker = json.loads(raw)
            if all(read_verified(self.shard_path(marker["tick"], i)) is not None for i in range(marker["shards"])):
                out.append(marker["tick"])
        return out

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` complete checkpoints (and anything older than them)."""
        import shutil

        ticks = self.complete_ticks()
        if len(ticks) <= keep:
            return
        oldest_kept = ticks[keep - 1]
        for d in self.root.glob("tick-*"):
            if int(d.name.split("-")[1]) < oldest_kept:
                shutil.rmtree(d, ignore_errors=True)

    def latest(self) -> int | None:
        ticks = self.complete_ticks()
        return ticks[0] if ticks else None
