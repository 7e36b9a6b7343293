"""Fault injection for tests and the reliability benchmark: a thread that kills shard actor
processes with SIGKILL (as a crash or the OOM killer would) at a steady interval while a run goes on."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import ray

from twin.util.background import ReportingThread

if TYPE_CHECKING:
    from twin.engine.supervisor import FleetSupervisor


class ShardKiller:
    """Kill one shard process every `every_s` seconds, round robin, until stopped or `max_kills`."""

    def __init__(self, supervisor: FleetSupervisor, *, every_s: float, max_kills: int | None = None):
        self.sup = supervisor
        self.every_s = every_s
        self.max_kills = max_kills
        self.kills: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = ReportingThread(self._run, name="shard-killer")

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every_s):
            if self.max_kills is not None and len(self.kills) >= self.max_kills:
                return
            i = n % len(self.sup.shards)
            n += 1
            # A shard being restarted does not answer; that one is skipped, the next is tried.
            with contextlib.suppress(ray.exceptions.RayError, ProcessLookupError, IndexError):
                pid = ray.get(self.sup.shards[i].info.remote(), timeout=10)["pid"]
                os.kill(pid, signal.SIGKILL)
                self.kills.append({"shard": i, "pid": pid, "at_tick": self.sup.tick, "wall": time.monotonic()})

    def __enter__(self) -> ShardKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join_or_raise()
