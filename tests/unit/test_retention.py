"""Checkpoint retention (newest few plus a thinning schedule) and the journal replay queue."""

from __future__ import annotations

import itertools

from twin.engine.checkpoint import retained
from twin.engine.journal import NOTHING_APPLIED, ReplayQueue


def test_retention_keeps_the_newest_the_future_and_a_thinning_past():
    every = 48
    ticks = [k * every - 1 for k in range(1, 366)]  # a year of daily checkpoints
    now = ticks[-1] + 1
    kept = retained(ticks, keep=4, now=now, every=every)
    assert set(ticks[-4:]) <= kept
    assert len(kept) < 30  # logarithmic in the run's length, not linear
    # Gaps never exceed the age of the checkpoint they follow: going back d days replays at most ~d days.
    ordered = sorted(kept, reverse=True)
    for newer, older in itertools.pairwise(ordered):
        assert newer - older <= max(4 * every, now - newer)
    # Monotone: what is dropped now is never kept later.
    later = retained(sorted(kept), keep=4, now=now + 100 * every, every=every)
    assert later <= kept
    # After a rewind to `now`, checkpoints past it are the run's future and all stay.
    assert retained(ticks, keep=4, now=ticks[10] + 1, every=every) >= set(ticks[10:])


def _rec(seq: int, after: int, at: int) -> dict:
    return {"seq": seq, "after_tick": after, "command": {"type": "power_outage", "at": at}}


def test_replay_queue_releases_records_in_position_order():
    q = ReplayQueue()
    recs = [_rec(1, -1, 0), _rec(4, 9, 12), _rec(2, 3, 20), _rec(3, 3, 8), _rec(5, 9, 30)]
    q.load(recs, applied=(3, 2))  # seqs 1 and 2 already accepted
    assert len(q) == 3 and q.min_at == 8
    assert q.blocks(8) and not q.blocks(7)
    assert [r["seq"] for r in q.due(3)] == [3]
    assert q.min_at == 12 and q.due(8) == []
    assert [r["seq"] for r in q.due(9)] == [4, 5]
    assert not q.blocks(10_000)
    q.load(recs, applied=NOTHING_APPLIED)
    assert [r["seq"] for r in q.due(100)] == [1, 2, 3, 4, 5]
    # A branch's journal: a parent's later command (seq 1) written before the branch's own (seq 2).
    q.load([_rec(1, 5, 9), _rec(2, 2, 4)], applied=NOTHING_APPLIED)
    assert [r["seq"] for r in q.due(100)] == [2, 1]
