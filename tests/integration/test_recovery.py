"""Nothing lost: a shard process killed mid-run is restarted by Ray, restores its newest complete
checkpoint and replays the ticks since; the run ends in exactly the fault-free state."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from tests.integration.conftest import run_dir
from twin.engine.checkpoint import CheckpointStore, read_verified, write_atomic
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=40_000, seed=29, block_size=1024)
ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
           "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 200}
TICKS = 72


def test_killed_shards_recover_to_the_fault_free_state():
    ref = LocalFleet(CFG)
    ref.submit(dict(ROLLOUT))
    ref.run(TICKS)
    sup = FleetSupervisor(CFG, shards=2, run_dir=run_dir("chaos"), checkpoint_every=12)
    kills = []
    try:
        op = sup.submit(dict(ROLLOUT))
        stop = threading.Event()

        def chaos():
            # Kill a shard's process (SIGKILL, as a crash would) every ~0.7 s while the run goes on.
            while not stop.is_set() and len(kills) < 3:
                time.sleep(0.7)
                try:
                    pid = ray.get(sup.shards[len(kills) % 2].info.remote(), timeout=10)["pid"]
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
                except Exception:
                    pass

        t = threading.Thread(target=chaos, daemon=True)
        t.start()
        for _ in range(TICKS):
            sup.step(1)
            time.sleep(0.03)
        stop.set()
        t.join()
        assert len(kills) >= 2
        assert len(sup.recoveries) >= 2, sup.recoveries
        assert sup.state_hash() == ref.state_hash()
        final = sup.operation(op["name"])["metadata"]["progress"]
        assert final["activated"] == ref.planner.ops[op["name"].split("/")[1]].counters["activated"]
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
    for tick in (11, 23):
        for i in range(2):
            write_atomic(store.shard_path(tick, i), b"state")
        store.mark_complete(tick, 2, {})
    # Crash before the marker (tick 35), mid-write (a .tmp only, tick 47), a corrupt shard (tick 59).
    write_atomic(store.shard_path(35, 0), b"state")
    write_atomic(store.shard_path(35, 1), b"state")
    store.shard_path(47, 0).parent.mkdir(parents=True)
    store.shard_path(47, 0).with_name("shard-0000.ckpt.tmp").write_bytes(b"partial")
    for i in range(2):
        write_atomic(store.shard_path(59, i), b"state")
    store.mark_complete(59, 2, {})
    store.shard_path(59, 1).write_bytes(b"garbage")
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
