"""The history store (Parquet segments, no Ray): whatever order ticks are written and rewritten in
(a resume or rewind summarises some again) and however the segments are merged and pruned, the
views hold exactly the latest row of every tick; runs written before the segments (one DuckDB
file) are still read, and resumed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.engine import history
from twin.engine.history import SCHEMA, HistoryStore, has_history, long_rows, query, segments, wide_rows
from twin.model.config import FleetConfig
from twin.model.summary import TickSummary

CFG = FleetConfig(hubs=2048, seed=1, block_size=1024)


def summary(tick: int, version: int) -> TickSummary:
    """A tick's summary marked with the write that produced it (odd writes carry an operation)."""
    s = TickSummary(tick)
    s.hh_lost = version
    s.messages[0, 0] = version * 10 + tick
    if version % 2:
        s.ops = {"w": {"v": version}}
    return s


def view(d: Path) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    # One reader's connection for the three queries (no writer runs meanwhile): what `query` does
    # once per statement, without opening and attaching the views three times.
    with history.open_history(d) as con:
        ticks = con.execute("SELECT tick, hh_lost FROM ticks").fetchall()
        ops = con.execute("SELECT tick, value FROM metrics WHERE metric = 'op:w' AND key = 'v'").fetchall()
        msgs = con.execute("SELECT tick, count(*) FROM metrics WHERE metric = 'messages' GROUP BY tick").fetchall()
    return dict(ticks), dict(ops), dict(msgs)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 12)), min_size=1, max_size=14))
def test_the_views_hold_the_latest_row_of_every_tick_through_rewrites_and_merges(writes):
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        # Merge every two segments and delete what was merged at once: every path, in few writes.
        mp.setattr(history, "MERGE_FANOUT", 2)
        mp.setattr(history, "DELETE_AFTER_S", 0.0)
        d = Path(tmp)
        store = HistoryStore(d, branch="run", config=CFG, flush_ticks=10**6)
        latest: dict[int, int] = {}
        for version, (first, n) in enumerate(writes, start=1):
            for t in range(first, first + n):
                store.record(summary(t, version))
                latest[t] = version
            store.flush()
        ticks, ops, msgs = view(d)
        assert ticks == latest
        assert ops == {t: v for t, v in latest.items() if v % 2}  # a rewritten tick keeps none of its old rows
        assert set(msgs.values()) <= {len(history._LABELS["messages"])} and set(msgs) == set(latest)
        # A fresh writer on the same folder (a resume) sees the same and numbers on from there.
        again = HistoryStore(d, branch="run", config=CFG)
        again.record(summary(0, 99))
        again.flush()
        assert dict(query(d, "SELECT tick, hh_lost FROM ticks")[1]) == {**latest, 0: 99}  # view(d)[0]
        store.close()
        again.close()


def test_segments_are_merged_so_a_long_run_keeps_few_files(tmp_path, monkeypatch):
    # Merged two at a time (the engine's fan-in is 8): the same tiers and the same cap on how often
    # a row is rewritten, in 41 flushes instead of 8**3.
    monkeypatch.setattr(history, "MERGE_FANOUT", 2)
    store = HistoryStore(tmp_path, branch="run", config=CFG, flush_ticks=1)
    for t in range(40):
        store.record(summary(t, 1))
    store.close()
    live = history._live(segments(tmp_path / history.DIR))
    # 41 segments written (the empty first one included), merged two at a time, never past
    # 2**MAX_MERGE_LEVEL flushes: 41 = 16 + 16 + 8 + 1.
    assert history.MAX_MERGE_LEVEL == 4
    assert [s.hi - s.lo + 1 for s in live] == [16, 16, 8, 1]
    _, rows = query(tmp_path, "SELECT count(*), count(DISTINCT tick), sum(hh_lost) FROM ticks")
    assert rows == [(40, 40, 40)]


def _legacy(d: Path, ticks: range, version: int) -> None:
    """A history as runs before the segments wrote it: one DuckDB file."""
    batch = [summary(t, version) for t in ticks]
    wide, long = wide_rows(batch, CFG), long_rows(batch)
    wide["branch"] = np.full(len(batch), "run", dtype=object)
    long["branch"] = np.full(long["tick"].size, "run", dtype=object)
    with duckdb.connect(str(d / history.FILE)) as con:
        for stmt in SCHEMA:
            con.execute(stmt)
        con.register("w", wide)
        con.register("l", long)
        con.execute("INSERT INTO ticks BY NAME SELECT * FROM w")
        con.execute("INSERT INTO metrics BY NAME SELECT * FROM l")


def test_a_run_from_before_the_segments_is_read_and_resumed(tmp_path):
    _legacy(tmp_path, range(10), version=1)
    assert has_history(tmp_path) and not (tmp_path / history.DIR).exists()
    assert view(tmp_path)[0] == dict.fromkeys(range(10), 1)
    assert query(tmp_path / history.FILE, "SELECT count(*) FROM ticks")[1] == [(10,)]  # the old path, too
    # Resumed from tick 6: ticks 6.. summarised again win over the file's.
    store = HistoryStore(tmp_path, branch="run", config=CFG)
    for t in range(6, 12):
        store.record(summary(t, 2))
    assert store.totals(upto=7)["hh_lost"] == 6 * 1 + 2 * 2
    store.close()
    assert view(tmp_path)[0] == {**dict.fromkeys(range(6), 1), **dict.fromkeys(range(6, 12), 2)}


def test_a_reader_never_blocks_the_writer(tmp_path):
    store = HistoryStore(tmp_path, branch="run", config=CFG, flush_ticks=1)
    store.record(summary(0, 1))
    with history.open_history(tmp_path) as reader:  # held open across the writes
        for t in range(1, 20):
            store.record(summary(t, 1))
            assert reader.execute("SELECT count(*) FROM ticks").fetchone() == (t + 1,)
    store.close()


def test_the_networks_capacity_figures_are_kept_per_tick(tmp_path):
    """The capacity model's report of each tick (twin.model.capacity) is in the `metrics` table,
    in whole units its names give, so a finished run can be asked how its links and classes did."""
    from twin.model.fleet import LocalFleet
    from twin.model.params import CapacityParams, ModelParams

    cfg = FleetConfig(hubs=4096, seed=11, block_size=1024,
                      params=ModelParams(capacity=CapacityParams(link_capacity_factor={"SOUTH/G2": 0.05})))
    summaries = LocalFleet(cfg).run(3)
    store = HistoryStore(tmp_path, branch="run", config=cfg)
    for s in summaries:
        store.record(s)
    store.flush()
    r = summaries[-1].capacity
    _, rows = query(tmp_path, "SELECT metric, key, value FROM metrics WHERE tick = 2 AND metric NOT IN "
                              "('messages', 'alerts', 'dark_by_reason', 'hubs_by_wan', 'supplier_hubs', "
                              "'gas_supplier_hubs', 'credit_ec_supplier', 'credit_off_supplier')")
    got = {(m, k): v for m, k, v in rows}
    assert 150 <= len(got) <= 300  # a few hundred numbers a tick
    assert got[("link_utilisation_ppm", "South/G2")] == round(float(r.link_utilisation[2 * 6 + 2]) * 1e6) > 1_000_000
    assert got[("link_capacity_per_hour", "South/G2")] == round(float(r.link_capacity[2 * 6 + 2]) * 3600) > 0
    assert got[("latency_p99_ms", "South/on-demand")] == round(float(r.latency_p99[2, 2]) * 1e3) > 30_000
    assert got[("within_target_ppm", "Central/on-demand")] == round(float(r.within_target[1, 2]) * 1e6)
    assert got[("stage", "dsp_utilisation_ppm")] == round(float(r.dsp_utilisation) * 1e6)
    assert ("link_backlog", "North/G2") not in got  # no such link is modelled


def _recovered(tick: int, *shard_seconds: tuple[int, float]) -> TickSummary:
    """A tick during which the given shards' recoveries completed (as StepPipeline records them)."""
    s = summary(tick, 1)
    s.recoveries = [{"shard": i, "tick": tick, "from_tick": tick - 3, "replayed": 2, "attempts": 1, "seconds": sec,
                     "done_at": 0.0, "node_ip": "10.0.0.3"} for i, sec in shard_seconds]
    return s


RECOVERY_SQL = "SELECT tick, recoveries, recovery_s, recovered_shards FROM ticks ORDER BY tick"


def test_recoveries_are_columns_of_their_tick_and_older_segments_read_as_none(tmp_path):
    store = HistoryStore(tmp_path, branch="run", config=CFG, flush_ticks=10**6)
    for t in range(3):
        store.record(summary(t, 1))
    store.close()
    # Those segments as a run written before the recovery columns existed left them.
    for f in (tmp_path / history.DIR).glob("ticks-*.parquet"):
        with duckdb.connect() as con:
            con.execute(f"COPY (SELECT * EXCLUDE (recoveries, recovery_s, recovered_shards) FROM read_parquet('{f}')) "
                        f"TO '{f}.old' (FORMAT parquet)")
            assert "recoveries" not in [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{f}.old')").fetchall()]
        Path(f"{f}.old").replace(f)
    assert query(tmp_path, RECOVERY_SQL)[1] == [(0, 0, 0.0, ""), (1, 0, 0.0, ""), (2, 0, 0.0, "")]
    # Resumed: new segments with recoveries, merged with the old ones (two at a time) as it goes.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(history, "MERGE_FANOUT", 2)
        again = HistoryStore(tmp_path, branch="run", config=CFG, flush_ticks=1)
        again.record(_recovered(3, (1, 2.5), (3, 0.25)))
        again.record(summary(4, 1))
        again.record(_recovered(5, (0, 1.0)))
        again.close()
    live = history._live(segments(tmp_path / history.DIR))
    # The old segment of ticks (flush 1) merged with the new ones (flushes 2..4).
    assert [(s.lo, s.hi) for s in live] == [(0, 0), (1, 4)]
    _, rows = query(tmp_path, RECOVERY_SQL)
    assert rows == [(0, 0, 0.0, ""), (1, 0, 0.0, ""), (2, 0, 0.0, ""), (3, 2, 2.75, "1,3"), (4, 0, 0.0, ""),
                    (5, 1, 1.0, "0")]
    # Every recovery of the run and its duration, by SQL and by day.
    assert query(tmp_path, "SELECT sum(recoveries), sum(recovery_s) FROM ticks WHERE recoveries > 0")[1] == [(3, 3.75)]
    _, days = history.aggregate_ticks(tmp_path, period="day", columns=["recoveries", "recovery_s"])
    assert [(d[3], d[4]) for d in days] == [(3, 3.75)]


def test_a_legacy_store_without_the_recovery_columns_reads_none(tmp_path):
    _legacy(tmp_path, range(4), version=1)
    with duckdb.connect(str(tmp_path / history.FILE)) as con:
        for c in history.RECOVERY_COLS:
            con.execute(f"ALTER TABLE ticks DROP COLUMN {c}")
    assert query(tmp_path, RECOVERY_SQL)[1] == [(t, 0, 0.0, "") for t in range(4)]
