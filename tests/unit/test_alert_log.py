"""The alert log: positions independent of the shard layout, files that survive a restart,
retention, and readers that resume from a position getting every alert once, in order."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.engine import alert_log
from twin.engine.alert_log import BYTES_PER_ALERT, AlertCursor, AlertLog, position, split
from twin.model.params import TICK_SECONDS


def events(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"hub": rng.integers(0, 50_000, n).astype(np.int64), "kind": rng.integers(0, 6, n).astype(np.uint8),
            "sec": rng.integers(0, TICK_SECONDS, n).astype(np.int64), "area": rng.integers(10, 24, n).astype(np.uint8),
            "supplier": rng.integers(1, 9, n).astype(np.uint8), "gas_supplier": rng.integers(0, 9, n).astype(np.uint8)}


def fresh_log(**kw) -> AlertLog:
    log = AlertLog(Path(tempfile.mkdtemp(prefix="twin-alertlog-")) / "alerts", **kw)
    log.reset(0)
    return log


def test_positions_pack_tick_and_place():
    assert position(7, 3) == 7 * 2**32 + 3
    assert split(position(123_456, 400_000)) == (123_456, 400_000)
    assert position(5, 0) < position(5, 1) < position(6, 0)


def test_the_order_of_a_tick_does_not_depend_on_how_shards_split_it():
    ev = events(5_000, 1)
    whole = fresh_log().append(0, ev).cols
    # Two shards: the second half's hubs first, as a different layout would concatenate them.
    order = np.argsort(ev["hub"] >= 25_000, kind="stable")[::-1]
    split_ev = {k: v[order] for k, v in ev.items()}
    other = fresh_log().append(0, split_ev).cols
    for k in whole:
        assert np.array_equal(whole[k], other[k]), k
    assert np.all(np.diff(whole["sec"].astype(np.int64)) >= 0)
    assert BYTES_PER_ALERT == 10


def test_a_tick_reads_back_from_disk_after_a_restart_and_retention_prunes():
    log = fresh_log(retention_days=1.0)  # 48 ticks
    for t in range(60):
        log.append(t, events(10 if t % 3 else 0, t))  # every third tick has no alerts
    assert (log.oldest_tick, log.newest_tick) == (12, 59)
    assert sorted(int(p.stem) for p in log.dir.glob("*.npz")) == [t for t in range(12, 60) if t % 3]
    again = AlertLog(log.dir, retention_days=1.0)
    assert (again.oldest_tick, again.newest_tick) == (12, 59)
    back = again.get(13)
    assert back is not None and back.recorded_at == 0.0
    for k, col in log.cached(13).cols.items():
        assert np.array_equal(back.cols[k], col) and back.cols[k].dtype == col.dtype
    assert again.get(15).size == 0  # in the window, no alerts
    assert again.get(11) is None and again.get(60) is None
    # A resumed run runs ticks after its checkpoint again: the log forgets them.
    again.reset(40)
    assert again.newest_tick == 39 and again.get(41) is None
    assert not (again.dir / "0000000041.npz").exists() and (again.dir / "0000000038.npz").exists()


def test_a_run_resumed_from_before_the_log_began_starts_the_log_there():
    log = AlertLog(Path(tempfile.mkdtemp(prefix="twin-alertlog-")) / "alerts")
    log.reset(30)  # e.g. a branch forked at tick 29, or a run from before the log
    assert log.oldest_tick == 30 and log.newest_tick == 29
    assert log.get(10) is None  # nothing is claimed about ticks the log never saw


# -- readers: produce, consume, get cut off, resume, in any interleaving ------------------------
OPS = st.lists(st.one_of(
    st.tuples(st.just("produce"), st.integers(0, 40)),
    st.tuples(st.just("consume"), st.integers(1, 60)),
    st.tuples(st.just("cut"), st.just(0)),
), min_size=1, max_size=60)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(alert_log, "CHUNK", 7)  # ticks span several chunks in the property test


@settings(max_examples=150, deadline=None)
@given(ops=OPS, retention_ticks=st.integers(2, 8), scope=st.integers(0, 3))
def test_any_interleaving_of_produce_consume_cut_and_resume_gives_each_alert_once_in_order(ops, retention_ticks,
                                                                                           scope):
    log = fresh_log(retention_days=retention_ticks * TICK_SECONDS / 86_400, cache_alerts=25)

    def select(cols):  # a subscriber's scope: its area (scope 0: all)
        return np.ones(cols["area"].size, bool) if scope == 0 else cols["area"] % 3 == scope - 1

    produced: list[int] = []  # positions in the scope, in order
    got: list[int] = []
    reader = AlertCursor(log, position(0, 0), select)
    tick = 0
    expired = False
    for op, n in ops:
        if op == "produce":
            ta = log.append(tick, events(n, tick))
            produced += [position(tick, i + 1) for i in np.flatnonzero(select(ta.cols))]
            tick += 1
        elif op == "cut":  # the stream ends; the subscriber resumes after the last it got
            reader = AlertCursor(log, got[-1] if got else position(0, 0), select)
        else:
            left = n
            while left and not expired:
                t = reader.next_tick()
                if t is None:
                    break
                if reader.expired():
                    expired = True
                    break
                ta = log.cached(t) or log.get(t)
                assert ta is not None
                idx = [int(i) for c in reader.chunks(ta) for i in c]
                for i in idx[:left]:
                    got.append(reader.delivered(ta, i))
                if len(idx) <= left:
                    reader.finished(ta)
                left -= min(left, len(idx))
        if expired:
            break
    assert got == sorted(set(got))  # in order, none twice
    if expired:
        # Only when the next undelivered alert's tick was pruned, and all before it were delivered.
        assert split(reader.after)[0] < log.oldest_tick
        assert got == produced[:len(got)]
    else:
        assert got == produced[:len(got)]  # no gap: a prefix of what was produced


def test_a_bad_format_version_is_refused():
    log = fresh_log()
    (log.dir / "log.json").write_text('{"format_version": 99, "first_tick": 0}')
    with pytest.raises(ValueError, match="format 99"):
        AlertLog(log.dir)


def test_alerts_throttled_by_storm_protection_are_never_logged_or_delivered():
    """SECMP0062: repeats of one alert code from one device past the threshold are discarded by
    the DCC. The capacity model marks them (`throttled`); the log, and so every subscriber, never
    holds them, and the forwarded ones keep their order and consecutive positions."""
    from twin.model.capacity import AlertStorm
    from twin.model.params import CapacityParams

    rng = np.random.default_rng(4)
    n = 400
    # A storm: 20 hubs each repeating one code every few seconds, among 200 one-off alerts.
    ev = events(200, 4)
    storm = {"hub": np.repeat(np.arange(20), 10).astype(np.int64), "kind": np.full(200, 1, np.uint8),
             "sec": np.tile(np.arange(0, 100, 10), 20).astype(np.int64),
             "area": np.full(200, 12, np.uint8), "supplier": np.full(200, 3, np.uint8),
             "gas_supplier": np.zeros(200, np.uint8)}
    ev = {k: np.concatenate([ev[k], storm[k]]) for k in ev}
    order = rng.permutation(n)
    ev = {k: v[order] for k, v in ev.items()}
    p = CapacityParams(alert_storm_threshold=3, alert_storm_period_s=900)
    throttled = AlertStorm().apply(ev["hub"], ev["kind"], ev["sec"], p)
    # Each storm hub: 3 forwarded, the 4th forwarded as its period's copy, the other 6 discarded.
    assert int(throttled.sum()) == 20 * 6
    log = fresh_log()
    ta = log.append(0, {**ev, "throttled": throttled})
    assert ta.size == n - 20 * 6
    kept = {k: v[~throttled] for k, v in ev.items()}
    want = log.append(1, kept).cols  # the same alerts with the discards never sent
    for k in want:
        assert np.array_equal(ta.cols[k], want[k]), k
    # A reader from the start gets exactly the forwarded alerts, at positions 1..kept.
    cursor = AlertCursor(log, position(0, 0), lambda cols: np.ones(cols["hub"].size, bool))
    got = [cursor.delivered(ta, i) for chunk in cursor.chunks(ta) for i in chunk]
    assert got == [position(0, i + 1) for i in range(ta.size)]
    # Per storm hub, what a subscriber sees: 4 of its 10 repeats.
    storm_hubs = ta.cols["hub"][(ta.cols["kind"] == 1) & (ta.cols["area"] == 12) & (ta.cols["supplier"] == 3)]
    assert np.bincount(storm_hubs[storm_hubs < 20].astype(np.int64), minlength=20).tolist() == [4] * 20
