"""Files written atomically and checksummed: a crash mid-write leaves the previous file whole, and a
truncated or corrupt one is detected when read. Shared by checkpoints and their column packs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

MAGIC = b"TWINCKPT1\n"


def write_atomic(path: Path, payload: bytes | Sequence[bytes | memoryview]) -> str:
    """Write `payload` (one buffer, or several written in turn and never joined) with its
    checksum; returns the hex digest. The digest goes in front, so it is written last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [payload] if isinstance(payload, bytes | bytearray | memoryview) else payload
    h = hashlib.sha256()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + bytes(32))
        for chunk in chunks:
            h.update(chunk)
            fh.write(chunk)
        fh.seek(len(MAGIC))
        fh.write(h.digest())
    replace_synced(tmp, path)
    return h.hexdigest()


def replace_synced(tmp: Path, path: Path, *, sync_dir: bool = True) -> None:
    """Put the finished file `tmp` in `path`'s place durably: `tmp` synced, renamed over `path`
    (a reader sees the old file or the new one, never part of one), then the folder synced so
    the rename itself survives a crash (skip that with sync_dir=False when several files are
    renamed into one folder and the caller syncs it once with `sync_folder`)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
