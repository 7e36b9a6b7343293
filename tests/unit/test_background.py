"""Background work never fails unseen: a task's error is logged and handed on, a thread's error
is raised to whoever joins it, a shard drain that breaks fails its waiting requests instead of
leaving them hanging, and a dashboard feed thread that breaks is counted, shown and restarted."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import SimpleNamespace

import pytest

from dashboard.app import clock_text
from dashboard.feed import FleetFeed
from twin.services.batching import ShardBatcher
from twin.util.background import ReportingThread, spawn


def test_a_failing_task_is_logged_and_reported(caplog):
    seen: list[BaseException] = []

    async def boom() -> None:
        raise ValueError("settle went wrong")

    async def main() -> None:
        task = spawn(boom(), name="settle-7", on_error=seen.append)
        with pytest.raises(ValueError):
            await task

    with caplog.at_level(logging.ERROR, logger="twin.util.background"):
        asyncio.run(main())
    assert [str(e) for e in seen] == ["settle went wrong"]
    assert "settle-7 failed" in caplog.text and "ValueError: settle went wrong" in caplog.text


def test_a_failing_thread_raises_to_whoever_joins_it():
    def work() -> None:
        raise OSError("no such shard")

    t = ReportingThread(work, name="shard-killer")
    t.start()
    with pytest.raises(RuntimeError, match="shard-killer failed: OSError: no such shard") as e:
        t.join_or_raise(timeout=10)
    assert isinstance(e.value.__cause__, OSError)


class _Method:
    def __init__(self, answer):
        self.answer = answer

    def remote(self, batch):
        async def call():
            await asyncio.sleep(0)
            return self.answer(batch)
        return call()


def test_a_drain_that_breaks_fails_every_waiting_request_instead_of_hanging():
    # A shard answering one result too few: not any one request's error.
    shard = SimpleNamespace(hubs=_Method(lambda batch: [{"hub": a[0]} for a in batch][:-1]))
    sup = SimpleNamespace(local_reads=None, shards=[shard], shard_of=lambda hub: 0)
    batcher = ShardBatcher(sup, "hubs")

    async def main():
        calls = [batcher.call(h) for h in range(5)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=10)

    results = asyncio.run(main())
    assert [str(r) for r in results] == ["shard 0 answered 4 results to 5 requests"] * 5
    assert batcher.busy == set() and not batcher.waiting.get(0)


def test_a_feed_thread_that_breaks_is_counted_shown_and_restarted():
    with socket.socket() as s:  # an API address nobody answers
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feed = FleetFeed(f"127.0.0.1:{port}", token="t")
    calls = {"n": 0}

    def broken() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("clock")

    feed._poll_fast = broken  # a bug in the poll, not an API error
    feed.start()
    try:
        deadline = time.monotonic() + 30
        while calls["n"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls["n"] >= 2  # restarted after the failure
        assert feed.status.thread_failures == 1
        assert feed.threads_alive()
        assert feed.status.thread_error == "feed-poll failed: KeyError: 'clock'"
    finally:
        feed.stop()


def test_the_header_says_when_the_clock_failed():
    feed = SimpleNamespace(current=lambda: {"time": "2026-06-01T00:00:00Z", "tick": 12},
                           clock=lambda: {"state": "failed", "speed": 1800.0, "error": "OSError: disk full"})
    assert clock_text(feed).endswith("tick 12 · failed · CLOCK FAILED: OSError: disk full")
