"""What the engine writes to a checkpoint folder is versioned data: every file a header and named
arrays (twin.model.records), none of it a pickle; a run resumes from it to the same state."""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_dir
from twin.engine.checkpoint import CheckpointStore, read_verified
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.records import peek

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=6_000, seed=13, block_size=1024)
EVENTS = [
    {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
     "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 200},
    {"type": "vwan_fallback", "region": "Central", "onboard_per_day": 80},
]


def test_the_engine_writes_no_pickle_and_resumes_from_its_records():
    d = run_dir("records")
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=8)
    try:
        for e in EVENTS:
            sup.submit(dict(e))
        sup.step(20)
    finally:
        sup.shutdown()
    store = CheckpointStore(d)
    ticks = store.marked_ticks()
    assert ticks == [15, 7]
    for tick in ticks:
        names = sorted(p.name for p in store.tick_dir(tick).iterdir())
        assert names == ["COMPLETE", "planner.rec", "shard-0000.ckpt", "shard-0001.ckpt"]
        for name in names[1:]:
            payload = read_verified(store.tick_dir(tick) / name)
            assert payload is not None
            header, _ = peek(payload)
            assert (header["format"], header["version"]) in {("twin.planner", 3), ("twin.shard-checkpoint", 2)}
            # Pickle protocol 2+ opens with 0x80 and names classes by module: neither is here.
            assert not payload.startswith(b"\x80") and b"twin.model" not in payload and b"builtins" not in payload
    ref = LocalFleet(CFG, splits=2)
    for e in EVENTS:
        ref.submit(dict(e))
    ref.run(30)
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=8, resume=True)
    try:
        assert sup.tick == 16
        sup.step(14)
        assert sup.state_hash() == ref.state_hash()
    finally:
        sup.shutdown()
