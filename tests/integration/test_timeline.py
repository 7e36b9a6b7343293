"""Revisiting a run: the tick-summary history in DuckDB (no row lost or doubled across a resume),
and rewind to any past tick (same state as a fresh run stopped there; replaying on reaches the
same final state)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_dir
from twin.engine.history import query
from twin.engine.supervisor import FleetSupervisor, RunStateError
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=40_000, seed=31, block_size=1024)
ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
           "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 200}


def _rows(d):
    return query(d, "SELECT * EXCLUDE (branch) FROM ticks ORDER BY tick")[1]


def test_history_has_one_row_per_tick_and_survives_a_resume():
    d = run_dir("history")
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12)
    sup.submit(dict(ROLLOUT))
    summaries = sup.step(30)  # checkpoints at 11 and 23; ticks 24..29 summarised after the last
    sup.shutdown()
    cols, rows = query(d, "SELECT tick, messages, dark_hubs, alerts FROM ticks ORDER BY tick")
    assert cols == ["tick", "messages", "dark_hubs", "alerts"]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (s.tick, s.total_messages, int(s.dark_hubs.sum()), int(s.alerts.sum())) for s in summaries]
    # The long table holds the breakdowns; they add up to the wide columns.
    _, check = query(d, "SELECT t.tick, t.messages, sum(m.value) FROM ticks t JOIN metrics m USING (branch, tick) "
                               "WHERE m.metric = 'messages' GROUP BY ALL HAVING t.messages <> sum(m.value)")
    assert check == []
    _, ops = query(d, "SELECT count(*) FROM metrics WHERE metric LIKE 'op:firmware-rollout-%'")
    assert ops[0][0] > 0

    again = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12, resume=True)
    try:
        assert again.resumed_from == 23
        assert again.totals["hh_lost"] == sum(s.hh_lost for s in summaries[:24])
        again.run_until(40)
        resumed_hash = again.state_hash()
    finally:
        again.shutdown()
    _, counts = query(d, "SELECT count(*), count(DISTINCT tick), min(tick), max(tick) FROM ticks")
    assert counts == [(40, 40, 0, 39)]  # ticks 24..29 summarised twice, stored once

    ref_dir = run_dir("history-ref")
    ref = FleetSupervisor(CFG, shards=2, run_dir=ref_dir, checkpoint_every=12)
    try:
        ref.submit(dict(ROLLOUT))
        ref.run_until(40)
        assert ref.state_hash() == resumed_hash
    finally:
        ref.shutdown()
    assert _rows(d) == _rows(ref_dir)


def test_rewind_reaches_a_fresh_runs_state_and_replays_to_the_same_end():
    d = run_dir("rewind")
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12)
    local = LocalFleet(CFG)
    try:
        op = sup.submit(dict(ROLLOUT))
        local.submit(dict(ROLLOUT))
        sup.step(20)
        local.run(20)
        # A pause and a resume accepted mid-run: a replay must accept them at the same points,
        # since the planner's decisions depend on when it learns of them.
        name = op["name"].split("/")[1]
        for n, action in ((6, "pause"), (9, "resume")):
            sup.submit({"type": "operation_control", "operation": name, "action": action})
            local.submit({"type": "operation_control", "operation": name, "action": action})
            sup.step(n)
            local.run(n)
        sup.run_until(60)
        end_hash = sup.state_hash()
        end_rows = _rows(d)

        fresh = {}
        ref = LocalFleet(CFG)
        ref.submit(dict(ROLLOUT))
        ref.run(20)
        ref.submit({"type": "operation_control", "operation": name, "action": "pause"})
        ref.run(3)
        fresh[23] = ref.state_hash()
        ref.run(3)
        ref.submit({"type": "operation_control", "operation": name, "action": "resume"})
        ref.run(6)
        fresh[32] = ref.state_hash()

        out = sup.rewind(32)  # from the checkpoint of tick 23
        assert out["from_checkpoint"] == 23 and sup.tick == 32
        assert sup.state_hash() == fresh[32]
        assert sup.head == 60
        with pytest.raises(RunStateError, match="fork a branch"):
            sup.submit({"type": "power_outage", "area": "Yorkshire", "duration_min": 30})
        # Checkpoint 11 was thinned out (kept: 23, 35, 47, 59), so this one rebuilds from the seed.
        assert sup.rewind(23)["from_checkpoint"] == -1
        assert sup.state_hash() == fresh[23]
        assert sup.rewind(5)["from_checkpoint"] == -1
        early = LocalFleet(CFG)
        early.submit(dict(ROLLOUT))
        early.run(5)
        assert sup.state_hash() == early.state_hash()
        sup.run_until(60)
        assert sup.state_hash() == end_hash
        assert _rows(d) == end_rows
        # Back at its head, the run takes commands again.
        sup.submit({"type": "power_outage", "area": "Yorkshire", "duration_min": 30})
        with pytest.raises(TwinInputError, match="tick"):
            sup.rewind(61)
    finally:
        sup.shutdown()
