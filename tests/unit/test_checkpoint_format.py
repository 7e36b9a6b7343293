"""Shard checkpoint payloads: the chunked format round-trips, and the first format (a pickled dict
holding the state as .npz) still loads, so runs checkpointed before the change can be resumed."""

from __future__ import annotations

import io
import pickle

import numpy as np

from twin.engine.checkpoint import parse_shard, read_verified, shard_chunks, write_atomic
from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.ops.runtime import ShardOps
from twin.model.state import COLUMNS, HubState


def _state() -> tuple[HubState, FleetConfig]:
    cfg = FleetConfig(hubs=5_000, seed=4, block_size=1024)
    st = generate(cfg, 1, 3)
    st.last_tick = 17
    st.inc_hub = np.array([1030, 2050], np.int64)
    st.inc_bit = np.array([1, 4], np.uint8)  # not POWER: power cuts are stretches (pw_*) now
    st.inc_end_s = np.array([99, 120], np.int64)
    return st, cfg


def test_chunked_checkpoint_round_trips_without_joining_the_state(tmp_path):
    st, cfg = _state()
    chunks = shard_chunks(st, ShardOps(cfg))
    # The columns go out as views of the state's own memory.
    assert any(isinstance(c, memoryview) and c.obj is st.cols["supplier"] for c in chunks)
    digest = write_atomic(tmp_path / "s.ckpt", chunks)
    payload = read_verified(tmp_path / "s.ckpt")
    assert payload is not None and len(digest) == 64
    state, ops = parse_shard(payload)
    back = HubState.from_bytes(state)
    assert back.block_digests() == st.block_digests() and back.last_tick == 17
    assert back.inc_hub.tolist() == [1030, 2050] and back.slot_dark_age.shape == st.slot_dark_age.shape
    assert isinstance(ops, ShardOps)


def test_the_first_format_still_loads():
    st, cfg = _state()
    buf = io.BytesIO()
    meta = np.array([st.seed, st.block_size, st.first_block, st.n_blocks, st.n_hubs_fleet, st.last_tick], np.int64)
    arrays = {f"col_{c.name}": st.cols[c.name] for c in COLUMNS}
    arrays.update({k: getattr(st, k) for k in HubState._SPARSE})
    np.savez(buf, meta=meta, **arrays)
    old = pickle.dumps({"state": buf.getvalue(), "ops": ShardOps(cfg)}, protocol=5)
    state, ops = parse_shard(old)
    assert HubState.from_bytes(state).block_digests() == st.block_digests() and isinstance(ops, ShardOps)
