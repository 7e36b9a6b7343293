"""Nothing grows with history, on the engine: without checkpoints the controls a restarted shard
must replay from the seed are spilled to the run directory, not held, and a shard killed late in
such a run still ends in the fault-free state; finished operations are retired on the way."""

from __future__ import annotations

import os
import signal

import pytest
import ray

from tests.integration.conftest import run_dir
from twin.engine.controls_log import SPILL_NAME
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.ops.runtime import LAG

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=4_096, seed=41, block_size=1024)  # four blocks: two a shard
ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
           "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 100}


def _drive(fleet, ticks: int, step) -> None:
    """A rollout (controls every tick) and an on-site Service Request each tick."""
    fleet.submit(dict(ROLLOUT))
    for t in range(ticks):
        fleet.submit({"type": "service_request", "srv": "8.14.1", "hub": (97 * t) % CFG.hubs})
        step()


def test_a_shard_killed_in_a_run_without_checkpoints_replays_the_spilled_controls():
    ref = LocalFleet(CFG)
    ref.planner.retention = 12
    _drive(ref, 60, ref.step)
    ref.run(6)
    sup = FleetSupervisor(CFG, shards=2, run_dir=run_dir("no-checkpoints"), checkpoint_every=None,
                          operation_retention_days=0.25)
    try:
        _drive(sup, 60, lambda: sup.step(1))
        log = sup.pipeline.controls_log
        assert len(log) <= LAG + 1 and log.spilled_ticks > 40  # in memory: the ticks in flight
        assert (sup.run_dir / SPILL_NAME).stat().st_size > 0
        assert len(sup.planner.ops) < 20 < sup.planner.seq  # finished requests retired
        pid = ray.get(sup.shards[1].info.remote())["pid"]
        os.kill(pid, signal.SIGKILL)
        sup.step(6)
        assert [(r["shard"], r["from_tick"], r["replayed"]) for r in sup.recoveries] == [(1, -1, 60)]
        assert sup.state_hash() == ref.state_hash()
    finally:
        sup.shutdown()


def test_the_growth_bench_accounts_for_every_operation_and_holds_the_stores_bounded(tmp_path):
    from twin.bench.growth import FIGURES, bench_growth

    # Twelve days, sampled every four: past the seven-day retention of a finished operation, so
    # the requests of the first days are retired by the end.
    r = bench_growth(hubs=4_096, years=12 / 365, shards=2, sample_days=4, run_dir=tmp_path / "growth")
    samples = r["samples"]
    assert [s["day"] for s in samples] == [4, 8, 12]
    last = samples[-1]
    # Every operation accepted is held or retired, none lost, and finished requests were retired.
    assert last["planner_ops"] + last["planner_retired"] == last["operations_accepted"] > 0
    assert last["planner_retired"] > last["operations_accepted"] / 4
    assert all(s["controls_log_ticks"] <= 48 for s in samples)  # cut at each daily checkpoint
    assert r["requests"]["accepted"] > 0 and set(r["slopes"]) == set(FIGURES)
