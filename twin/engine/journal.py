"""The append-only journal of accepted commands: one JSON line each, flushed and fsynced before the
command is acknowledged, so nothing acknowledged is lost. With the seed, it defines the run."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.model.ops.commands import Command, command_from_dict


class Journal:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.seq = sum(1 for _ in self.records()) if path.exists() else 0
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run

    def append(self, cmd: Command) -> int:
        """Write one accepted command durably; returns its sequence number."""
        with self._lock:
            self.seq += 1
            rec = {"seq": self.seq, "accepted_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                   "command": cmd.to_dict()}
            self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            return self.seq

    def records(self) -> Iterator[dict[str, Any]]:
        """Complete records in order; a torn last line (a crash mid-write) is ignored."""
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    return
                yield json.loads(line)

    def commands(self) -> list[Command]:
        return [command_from_dict(r["command"]) for r in self.records()]

    def close(self) -> None:
        with self._lock:
            self._fh.close()
