"""The append-only journal of accepted commands: one JSON line each, flushed and fsynced before the
command is acknowledged, so nothing acknowledged is lost. With the seed, it defines the run.

Each record carries its position: `after_tick`, the last tick the fleet planner had observed when
the command was accepted, and `seq`. Commands are accepted in (after_tick, seq) order, so a replay
(resume, rewind, a fork) accepts each at the same point of the run and reaches the same state.
`op_seq` is the number the command's operation was given (its name and random streams)."""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.model.ops.commands import Command, command_from_dict

Position = tuple[int, int]  # (after_tick, seq)
NOTHING_APPLIED: Position = (-2, 0)


def position(rec: dict[str, Any]) -> Position:
    return (int(rec.get("after_tick", -1)), int(rec["seq"]))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete records in file order; a torn last line (a crash mid-write) is ignored."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            out.append(json.loads(line))
    return out


class Journal:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        recs = read_records(path)
        # A branch's journal holds its parent's records under their parent numbers, so the next
        # number is one past the largest, not the count.
        self.seq = max((int(r["seq"]) for r in recs), default=0)
        self.max_op_seq = max((int(r.get("op_seq") or 0) for r in recs), default=0)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run

    def append(self, cmd: Command, *, after_tick: int, op_seq: int | None = None,
               request: dict[str, str] | None = None) -> int:
        """Write one accepted command durably; returns its sequence number. `request` names the
        API request that asked for it (caller, request id, digest, operation: RequestKey.journal_entry),
        so a retry after a restart still gets the first answer."""
        with self._lock:
            self.seq += 1
            rec = {"seq": self.seq, "accepted_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                   "after_tick": after_tick, "command": cmd.to_dict()}
            if request is not None:
                rec["request"] = request
            if op_seq is not None:
                rec["op_seq"] = op_seq
                self.max_op_seq = max(self.max_op_seq, op_seq)
            self._write(rec)
            return self.seq

    def _write(self, rec: dict[str, Any]) -> None:
        self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        yield from read_records(self.path)

    def commands(self) -> list[Command]:
        return [command_from_dict(r["command"]) for r in self.records()]

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def write_journal(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """A new journal holding `records` as they are (a branch starts with its parent's)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ReplayQueue:
    """Journal records not yet accepted, in the order they must be: each is due once the planner
    has observed its `after_tick`. A tick may not be sent to the shards while a queued command
    that takes effect at or before it is still waiting."""

    def __init__(self) -> None:
        self._recs: deque[dict[str, Any]] = deque()
        self.min_at: int | None = None

    def load(self, records: Iterable[dict[str, Any]], *, applied: Position) -> None:
        later = sorted((r for r in records if position(r) > applied), key=position)
        self._recs = deque(later)
        self._reset_min()

    def due(self, observed: int) -> list[dict[str, Any]]:
        out = []
        while self._recs and position(self._recs[0])[0] <= observed:
            out.append(self._recs.popleft())
        if out:
            self._reset_min()
        return out

    def blocks(self, tick: int) -> bool:
        return self.min_at is not None and self.min_at <= tick

    def _reset_min(self) -> None:
        self.min_at = min((int(r["command"]["at"]) for r in self._recs), default=None)

    def __len__(self) -> int:
        return len(self._recs)
