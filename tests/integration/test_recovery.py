"""Nothing lost: a shard process killed mid-run is restarted by Ray, restores its newest complete
checkpoint and replays the ticks since; the run ends in exactly the fault-free state."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import run_dir
from twin.engine.chaos import ShardKiller
from twin.engine.checkpoint import CheckpointStore, read_verified, write_atomic
from twin.engine.operations import operation_view
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.ops.progress import FirmwareRolloutProgress
from twin.model.records import pack_bytes

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=40_000, seed=29, block_size=1024)
ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
           "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 200}
TICKS = 72


def _chaos_run(config: FleetConfig, *, ticks: int, every_s: float, checkpoint_every: int, pace_s: float = 0.0,
               max_kills: int | None = None):
    """A rollout run with a shard process SIGKILLed every `every_s` seconds; returns the supervisor
    (still up), the kills and the operation's name."""
    sup = FleetSupervisor(config, shards=2, run_dir=run_dir("chaos"), checkpoint_every=checkpoint_every)
    op = sup.submit(dict(ROLLOUT))
    with ShardKiller(sup, every_s=every_s, max_kills=max_kills) as killer:
        for _ in range(ticks):
            sup.step(1)
            time.sleep(pace_s)
    return sup, killer.kills, op["name"]


def _assert_fault_free(sup: FleetSupervisor, ref_hash: str, ref_ops: FirmwareRolloutProgress, op_name: str) -> None:
    assert sup.state_hash() == ref_hash
    assert sum(i["hubs"] for i in sup.info()) == sup.config.hubs  # no hub lost
    views = sup.operations()
    assert [v["name"] for v in views] == [op_name]  # the one command, applied once
    assert views[0]["metadata"]["progress"] == ref_ops


def test_killed_shards_recover_to_the_fault_free_state():
    ref = LocalFleet(CFG)
    ref.submit(dict(ROLLOUT))
    ref.run(TICKS)
    ref_op = next(iter(ref.planner.ops.values()))
    sup, kills, name = _chaos_run(CFG, ticks=TICKS, every_s=0.7, checkpoint_every=12, pace_s=0.03, max_kills=3)
    try:
        assert len(kills) >= 2
        assert len(sup.recoveries) >= 2, sup.recoveries
        _assert_fault_free(sup, ref.state_hash(), operation_view(ref_op, CFG)["metadata"]["progress"], name)
    finally:
        sup.shutdown()


@pytest.mark.slow
def test_chaos_at_a_million_hubs():
    """The issue's chaos test: a shard killed every few seconds during a 1M-hub firmware rollout."""
    config = FleetConfig(hubs=1_000_000, seed=29)
    ticks = 480  # ten simulated days
    ref = FleetSupervisor(config, shards=2, run_dir=run_dir("chaos-ref"), checkpoint_every=24)
    try:
        ref.submit(dict(ROLLOUT))
        ref.run_until(ticks)
        ref_hash, ref_ops = ref.state_hash(), ref.operations()[0]["metadata"]["progress"]
    finally:
        ref.shutdown()
    assert ref_ops.activated > 0
    sup, kills, name = _chaos_run(config, ticks=ticks, every_s=3.0, checkpoint_every=24)
    try:
        assert len(kills) >= 3 and len(sup.recoveries) >= 3, (kills, sup.recoveries)
        _assert_fault_free(sup, ref_hash, ref_ops, name)
    finally:
        sup.shutdown()


def test_checkpoints_are_atomic_and_corrupt_ones_are_never_loaded(tmp_path):
    p = tmp_path / "x.ckpt"
    write_atomic(p, b"hello")
    assert read_verified(p) == b"hello"
    p.write_bytes(p.read_bytes()[:-2])  # truncated
    assert read_verified(p) is None
    write_atomic(p, b"hello")
    data = bytearray(p.read_bytes())
    data[-1] ^= 1  # a flipped bit
    p.write_bytes(bytes(data))
    assert read_verified(p) is None
    store = CheckpointStore(tmp_path)
    # A shard manifest naming no column pack (the packs' own checks are in test_checkpoint_format).
    manifest = pack_bytes("twin.shard-checkpoint", 2, {"columns": {}}, [])
    for tick in (11, 23):
        for i in range(2):
            write_atomic(store.shard_path(tick, i), manifest)
        store.mark_complete(tick, 2, {})
    # Crash before the marker (tick 35), mid-write (a .tmp only, tick 47), a corrupt shard (tick 59).
    write_atomic(store.shard_path(35, 0), manifest)
    write_atomic(store.shard_path(35, 1), manifest)
    store.shard_path(47, 0).parent.mkdir(parents=True)
    store.shard_path(47, 0).with_name("shard-0000.ckpt.tmp").write_bytes(b"partial")
    for i in range(2):
        write_atomic(store.shard_path(59, i), manifest)
    store.mark_complete(59, 2, {})
    store.shard_path(59, 1).write_bytes(b"garbage")
    # A manifest that verifies but names a pack that is not there (tick 71).
    missing = pack_bytes("twin.shard-checkpoint", 2, {"columns": {"col_x": {"chunks": [["col_x-71.pack", 0, 9]]}}}, [])
    write_atomic(store.shard_path(71, 0), manifest)
    write_atomic(store.shard_path(71, 1), missing)
    store.mark_complete(71, 2, {})
    assert store.complete_ticks() == [23, 11]


def test_whole_process_resume_applies_every_acknowledged_command_exactly_once():
    d = run_dir("resume")
    late = {"type": "power_outage", "area": "Yorkshire", "fraction": 0.3, "duration_min": 60, "at": 44}
    torn = {"type": "supplier_switch", "hub": 77, "to_supplier": "Octopus Energy", "at": 46}
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12)
    sup.submit(dict(ROLLOUT))
    sup.step(40)  # complete checkpoints at ticks 11, 23, 35
    sup.submit(dict(late))  # acknowledged after the last checkpoint
    # A crash between the journal write and the acknowledgement: on disk, never acknowledged.
    from twin.model.ops.commands import parse_command

    sup.journal.append(parse_command(dict(torn), CFG, now_tick=sup._next_submit), after_tick=sup.planner.observed,
                       op_seq=sup.planner.seq + 1)
    sup.shutdown()  # the process dies; nothing after tick 35 is saved but the journal

    ref = LocalFleet(CFG)
    ref.submit(dict(ROLLOUT))
    ref.run(40)
    ref.submit(dict(late))
    ref.submit(dict(torn))
    ref.run(24)

    again = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12, resume=True)
    try:
        assert again.resumed_from == 35 and again.tick == 36
        again.run_until(64)
        assert again.state_hash() == ref.state_hash()
        kinds = sorted(v["metadata"]["kind"] for v in again.operations())
        assert kinds == ["firmware_rollout", "power_outage", "supplier_switch"]  # each exactly once
    finally:
        again.shutdown()
