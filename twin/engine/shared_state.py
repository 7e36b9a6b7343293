"""A shard's hub columns in shared memory, so the API on the same node reads a hub without a Ray
call (a Ray call costs the caller about 0.7 ms of CPU; reading one row here costs microseconds).

The shard owns the segment and stays the only writer: its columns are views of the segment, and a
sequence counter in the segment's header is odd while a tick (or a restore) is changing them. A
reader copies one row, then checks that the counter was even and unchanged across the copy (a
seqlock); otherwise it tries again, and after a short while falls back to asking the shard. Only
for readers on the shard's own node; elsewhere the Ray path is used."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from types import SimpleNamespace
from typing import Any

import numpy as np

HEADER = 4  # int64 words: sequence, last tick, two unused
PREFIX = "twin-"  # segment names: twin-{owner pid}-{run tag}-{random}
ALIGN = 64


def run_tag(run_dir: str | os.PathLike[str] | None) -> str:
    """A short tag for a run directory, part of its shards' segment names, so the segments of one
    run can be told from another's (another twin on the machine) by name alone."""
    if run_dir is None:
        return "norun"
    import hashlib

    return hashlib.sha256(os.path.abspath(os.fspath(run_dir)).encode()).hexdigest()[:10]


def segments_of(run_dir: str | os.PathLike[str] | None, root: str = "/dev/shm") -> list[str]:
    """The shared segments of a run's shards present now."""
    tag = run_tag(run_dir)
    try:
        return sorted(n for n in os.listdir(root) if n.startswith(PREFIX) and n.split("-")[2:3] == [tag])
    except OSError:
        return []


def _layout(cols: dict[str, np.ndarray]) -> tuple[list[tuple[str, str, int, int]], int]:
    out, off = [], HEADER * 8
    for name, arr in cols.items():
        off = (off + ALIGN - 1) // ALIGN * ALIGN
        out.append((name, arr.dtype.str, off, arr.size))
        off += arr.nbytes
    return out, off


def _shm_free_bytes() -> int | None:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None  # not Linux-style shared memory: let the allocation decide
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True)
class Descriptor:
    """What a reader needs to attach: the segment's name and where each column lies."""

    name: str
    columns: tuple[tuple[str, str, int, int], ...]
    offset: int  # global id of row 0
    n_hubs: int
    node_id: str


class SharedColumns:
    """The writer side, inside a shard. `adopt(state)` moves (a copy of) the state's columns into
    the segment and makes the state use them; call it again whenever the state is replaced."""

    def __init__(self, state: Any, node_id: str, *, tag: str = "norun"):
        layout, size = _layout(state.cols)
        # /dev/shm is a memory file system, sometimes a small one (containers): writing past its
        # end kills the process with SIGBUS, so refuse up front and let readers ask over Ray.
        free = _shm_free_bytes()
        if free is not None and free < size + (64 << 20):
            raise MemoryError(f"shared memory has {free:,} bytes free; the shard's columns need {size:,}")
        # The owner's pid in the name lets a later run remove segments a crash left behind; the
        # run's tag tells whose run they are.
        self.shm = shared_memory.SharedMemory(create=True, size=size,
                                              name=f"{PREFIX}{os.getpid()}-{tag}-{uuid.uuid4().hex[:12]}")
        self.header = np.ndarray((HEADER,), dtype=np.int64, buffer=self.shm.buf)
        self.header[:] = 0
        self.layout = layout
        self.node_id = node_id
        self.adopt(state)

    def adopt(self, state: Any) -> None:
        self.begin()
        for name, dtype, off, n in self.layout:
            view = np.ndarray((n,), dtype=np.dtype(dtype), buffer=self.shm.buf, offset=off)
            view[:] = state.cols[name]
            state.cols[name] = view
        self.state = state
        self.end(state.last_tick)

    def begin(self) -> None:
        self.header[0] += 1  # odd: rows may be half-written

    def end(self, last_tick: int) -> None:
        self.header[1] = last_tick
        self.header[0] += 1

    def descriptor(self) -> Descriptor:
        return Descriptor(self.shm.name, tuple(self.layout), self.state.offset, self.state.n_hubs, self.node_id)

    def close(self) -> None:
        """Detach the state (its columns become private copies again) and remove the segment."""
        for name in list(self.state.cols):
            self.state.cols[name] = np.array(self.state.cols[name])
        self.header = None  # type: ignore[assignment]
        self.shm.close()
        self.shm.unlink()


class SharedReader:
    """The reader side, in the API's process. `row(hub)` is a consistent copy of one hub's columns
    and the tick they describe, or None if the shard kept writing (the caller then asks the shard)."""

    def __init__(self, d: Descriptor):
        self.descriptor = d
        self.shm = shared_memory.SharedMemory(name=d.name)
        # Before Python 3.13 attaching registers the segment with this process's resource tracker,
        # which would remove it when this process exits; the shard owns it, so unregister.
        resource_tracker.unregister(self.shm._name, "shared_memory")  # type: ignore[attr-defined]
        self.header = np.ndarray((HEADER,), dtype=np.int64, buffer=self.shm.buf)
        self.cols = {name: np.ndarray((n,), dtype=np.dtype(dt), buffer=self.shm.buf, offset=off)
                     for name, dt, off, n in d.columns}

    def row(self, hub: int, wait_s: float = 0.05) -> tuple[SimpleNamespace, int] | None:
        r = hub - self.descriptor.offset
        end = time.monotonic() + wait_s
        while True:
            s1 = int(self.header[0])
            if not s1 & 1:
                # Each value is copied out as a numpy scalar (in a one-item list, so the row reads
                # like a one-hub HubState's columns): cheaper than a one-item array per column.
                row = {k: [v[r]] for k, v in self.cols.items()}
                tick = int(self.header[1])
                if int(self.header[0]) == s1:
                    return SimpleNamespace(offset=hub, n_hubs=1, cols=row), tick
            if time.monotonic() > end:
                return None
            time.sleep(0.0005)

    def rows(self, hubs: np.ndarray, wait_s: float = 0.05) -> tuple[SimpleNamespace, int] | None:
        """`row` for many hubs at once (int array of hub ids, all of this shard): a consistent
        copy of their columns, as a HubState-like view whose rows 0..len(hubs)-1 are `hubs`, and
        the tick they describe; None if the shard kept writing."""
        r = np.asarray(hubs, dtype=np.int64) - self.descriptor.offset
        end = time.monotonic() + wait_s
        while True:
            s1 = int(self.header[0])
            if not s1 & 1:
                cols = {k: v[r] for k, v in self.cols.items()}
                tick = int(self.header[1])
                if int(self.header[0]) == s1:
                    return SimpleNamespace(offset=0, n_hubs=len(r), cols=cols), tick
            if time.monotonic() > end:
                return None
            time.sleep(0.0005)

    def retire(self) -> None:
        """Mark the segment as being written for good (its shard is dead): a reader in another
        process that still maps it (an API replica) never takes a row from it again."""
        self.header[0] = int(self.header[0]) | 1

    def close(self) -> None:
        self.cols = {}
        self.header = None  # type: ignore[assignment]
        self.shm.close()


def sweep_stale(root: str = "/dev/shm") -> list[str]:
    """Remove segments whose shard process is gone. A shard removes its segment when it stops, and
    its resource tracker when it dies alone; when the whole run is killed at once, nothing does, and
    the segment would hold its memory until the machine restarts. Returns the names removed."""
    import psutil

    removed: list[str] = []
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        pid = name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            try:
                os.unlink(os.path.join(root, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def unlink(name: str) -> None:
    """Remove a segment whose shard is gone (a killed shard cannot remove its own)."""
    try:
        shm = shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        return
    shm.close()
    shm.unlink()  # also drops the registration that attaching made
